//! Partners, products and their stock accounts outside of order placement, on SQLite.

use super::catalog_batch;
use super::conn::{snapshot, SqliteStore};
use super::outbox;
use super::stock::{insert_movement, move_stock};
use crate::domain::order::MovementKind;
use crate::domain::{events, Timestamp};
use crate::store::catalog::INITIAL_STOCK_MEMO;
use crate::store::rows::{movement_from_row, partner_from_row, product_from_row};
use crate::store::{
    sql, AdjustOutcome, CatalogStore, MovementRecord, NewProduct, Page, PageRequest, PartnerRecord,
    ProductPatch, ProductRecord, StockLevels, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::SqliteConnection;

async fn product_in(conn: &mut SqliteConnection, id: i64) -> StoreResult<Option<ProductRecord>> {
    let row = sqlx::query(sql::PRODUCT_BY_ID)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(product_from_row).transpose()
}

#[async_trait]
impl CatalogStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn insert_partner(
        &self,
        name: &str,
        commission_rate_bps: i64,
        now: Timestamp,
    ) -> StoreResult<PartnerRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sql::INSERT_PARTNER)
            .bind(name)
            .bind(commission_rate_bps)
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await?;
        let partner = partner_from_row(&row)?;
        let event = events::partner_created(partner.id, partner.commission_rate_bps);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(partner)
    }

    #[tracing::instrument(skip_all, fields(partner_id = id))]
    async fn partner(&self, id: i64) -> StoreResult<Option<PartnerRecord>> {
        let row = sqlx::query(sql::PARTNER_BY_ID)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(partner_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(partner_id = product.partner_id))]
    async fn insert_product(
        &self,
        product: &NewProduct,
        now: Timestamp,
    ) -> StoreResult<ProductRecord> {
        let mut tx = self.write_tx().await?;
        let record = insert_product(&mut tx, product, now).await?;
        tx.commit().await?;
        Ok(record)
    }

    #[tracing::instrument(skip_all, fields(count = products.len()))]
    async fn insert_products(
        &self,
        products: &[NewProduct],
        now: Timestamp,
    ) -> StoreResult<Vec<ProductRecord>> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let records = catalog_batch::insert_products(&mut tx, products, now).await?;
        tx.commit().await?;
        Ok(records)
    }

    #[tracing::instrument(skip_all, fields(product_id = id))]
    async fn product(&self, id: i64) -> StoreResult<Option<ProductRecord>> {
        let mut conn = self.reader.acquire().await?;
        product_in(&mut conn, id).await
    }

    #[tracing::instrument(skip_all, fields(page = page.page, size = page.size))]
    async fn list_products(&self, page: PageRequest) -> StoreResult<Page<ProductRecord>> {
        let mut tx = snapshot(&self.reader).await?;
        let rows = sqlx::query(sql::PRODUCTS_PAGE)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_PRODUCTS)
            .fetch_one(&mut *tx)
            .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(product_from_row)
                .collect::<StoreResult<_>>()?,
            page: page.page,
            size: page.size,
            total,
        })
    }

    #[tracing::instrument(skip_all, fields(product_id = id))]
    async fn update_product(
        &self,
        id: i64,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> StoreResult<Option<ProductRecord>> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(sql::UPDATE_PRODUCT)
            .bind(id)
            .bind(patch.name.as_deref())
            .bind(patch.price)
            .bind(patch.release_at.map(Timestamp::millis))
            .bind(patch.max_per_user.is_some())
            .bind(patch.max_per_user.flatten())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let event = events::product_changed(events::PRODUCT_UPDATED, id);
        outbox::append(&mut tx, &[event], now).await?;
        let record = product_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, quantity = quantity))]
    async fn inbound(
        &self,
        product_id: i64,
        quantity: i64,
        memo: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<StockLevels>> {
        let mut tx = self.write_tx().await?;
        let how = (MovementKind::Inbound, quantity);
        let levels = match move_stock(&mut tx, product_id, how, (None, memo), now).await {
            Ok(levels) => levels,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let event = events::stock_changed(product_id, levels.on_hand, levels.held);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(Some(levels))
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, delta = delta))]
    async fn adjust(
        &self,
        product_id: i64,
        delta: i64,
        memo: &str,
        now: Timestamp,
    ) -> StoreResult<AdjustOutcome> {
        let mut tx = self.write_tx().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(sql::ADJUST_STOCK)
            .bind(product_id)
            .bind(delta)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((on_hand, held)) = row else {
            // Nothing changed; only tell a missing product from a refused correction.
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT product_id FROM stock WHERE product_id = $1")
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(match exists {
                Some(_) => AdjustOutcome::BelowHeld,
                None => AdjustOutcome::NotFound,
            });
        };
        let levels = StockLevels {
            product_id,
            on_hand,
            held,
        };
        let how = (MovementKind::Adjust, delta);
        insert_movement(&mut tx, &levels, how, (None, Some(memo)), now).await?;
        let event = events::stock_changed(product_id, on_hand, held);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(AdjustOutcome::Done(levels))
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, page = page.page))]
    async fn movements(
        &self,
        product_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<MovementRecord>> {
        let mut tx = snapshot(&self.reader).await?;
        let rows = sqlx::query(sql::MOVEMENTS_PAGE)
            .bind(product_id)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_MOVEMENTS)
            .bind(product_id)
            .fetch_one(&mut *tx)
            .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(movement_from_row)
                .collect::<StoreResult<_>>()?,
            page: page.page,
            size: page.size,
            total,
        })
    }
}

/// The product, its empty stock account and `product.created`; then the opening stock as
/// an ordinary inbound, so a product created empty has no stock event until its first
/// inbound.
async fn insert_product(
    conn: &mut SqliteConnection,
    product: &NewProduct,
    now: Timestamp,
) -> StoreResult<ProductRecord> {
    let id: i64 = sqlx::query_scalar(sql::INSERT_PRODUCT)
        .bind(product.partner_id)
        .bind(&product.name)
        .bind(product.price)
        .bind(product.release_at.millis())
        .bind(product.max_per_user)
        .bind(now.millis())
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO stock (product_id, on_hand, held) VALUES ($1, 0, 0)")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let created = events::product_changed(events::PRODUCT_CREATED, id);
    outbox::append(conn, &[created], now).await?;
    if product.stock > 0 {
        let how = (MovementKind::Inbound, product.stock);
        let levels = move_stock(conn, id, how, (None, Some(INITIAL_STOCK_MEMO)), now).await?;
        let changed = events::stock_changed(id, levels.on_hand, levels.held);
        outbox::append(conn, &[changed], now).await?;
    }
    product_in(conn, id).await?.ok_or(StoreError::NotFound)
}
