//! What operators watch, on PostgreSQL: the shared statements (`sql::BEAT_NODE` …).

use super::conn::PgStore;
use crate::domain::Timestamp;
use crate::store::operations::{
    add_unseen, campaign_from_row, node_from_row, product_in_play_from_row,
};
use crate::store::{sql, CampaignProgress, NodeBeat, OperationsStore, ProductInPlay, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl OperationsStore for PgStore {
    #[tracing::instrument(skip_all, fields(node = %beat.id))]
    async fn beat(&self, beat: &NodeBeat, forget_before: Timestamp) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::BEAT_NODE)
            .bind(&beat.id)
            .bind(beat.started_at.millis())
            .bind(beat.seen_at.millis())
            .bind(beat.draining)
            .bind(&beat.stats)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::FORGET_NODES)
            .bind(forget_before.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_node(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::FORGET_NODE)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeBeat>> {
        let rows = sqlx::query(sql::NODES).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| node_from_row(row, row.try_get("draining")?))
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn products_in_play(
        &self,
        moved_since: Timestamp,
        recent_movements: i64,
        released: (Timestamp, Timestamp),
        limit: i64,
    ) -> StoreResult<Vec<ProductInPlay>> {
        let mut ids: Vec<i64> = sqlx::query_scalar(sql::PRODUCTS_MOVED_RECENTLY)
            .bind(recent_movements)
            .bind(moved_since.millis())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let released: Vec<i64> = sqlx::query_scalar(sql::PRODUCTS_RELEASED_BETWEEN)
            .bind(released.0.millis())
            .bind(released.1.millis())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        add_unseen(&mut ids, released, limit);
        let mut products = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(sql::PRODUCT_IN_PLAY)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                products.push(product_in_play_from_row(&row)?);
            }
        }
        Ok(products)
    }

    async fn campaigns_in_play(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<CampaignProgress>> {
        let rows = sqlx::query(sql::CAMPAIGNS_IN_PLAY)
            .bind(from.millis())
            .bind(to.millis())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn open_dead_letters(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::OPEN_DEAD_LETTERS)
            .fetch_one(&self.pool)
            .await?)
    }
}
