//! Sellers' steps on partner orders, the partner's listing and the fulfilment audit on
//! SQLite. A step is one conditional `UPDATE … WHERE status = <from>` in a write
//! transaction: SQLite's single writer makes it atomic, and the condition makes a second
//! attempt (a retry, a second seller at once) change nothing.

use super::conn::{json_ids, SqliteStore};
use super::outbox;
use crate::domain::events;
use crate::domain::fulfilment::{Advance, PartnerOrderStatus};
use crate::domain::Timestamp;
use crate::store::rows::{partner_order_list_from_rows, partner_order_states_from_row};
use crate::store::{
    sql, FulfilmentAudit, FulfilmentOutcome, FulfilmentStore, Page, PageRequest,
    PartnerOrderRecord, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::SqliteConnection;

#[async_trait]
impl FulfilmentStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn partner_order(&self, id: i64) -> StoreResult<Option<PartnerOrderRecord>> {
        let mut conn = self.reader.acquire().await?;
        load_partner_order(&mut conn, id).await
    }

    #[tracing::instrument(skip_all, fields(partner_order_id = id, step = step.name()))]
    async fn advance_partner_order(
        &self,
        id: i64,
        step: &Advance,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome> {
        let mut tx = self.write_tx().await?;
        let (from, to) = step.change();
        let shipment = step.shipment();
        let moved: Option<i64> = sqlx::query_scalar(sql::ADVANCE_PARTNER_ORDER)
            .bind(id)
            .bind(now.millis())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(shipment.map(|s| s.carrier()))
            .bind(shipment.map(|s| s.tracking_number()))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(order_id) = moved else {
            let current = load_partner_order(&mut tx, id).await?;
            tx.rollback().await?;
            return Ok(current.map_or(FulfilmentOutcome::NotFound, FulfilmentOutcome::Refused));
        };
        if to == PartnerOrderStatus::Delivered {
            sqlx::query(sql::MARK_ORDER_DELIVERED)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
        }
        let partner_order = load_partner_order(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
        let user_id: i64 = sqlx::query_scalar(sql::ORDER_OWNER)
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
        let event =
            events::partner_order_changed(step.event_type(), &partner_order.changed(user_id, now));
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(FulfilmentOutcome::Done(partner_order))
    }

    #[tracing::instrument(skip_all, fields(partner_id = partner_id, page = page.page, size = page.size))]
    async fn partner_orders(
        &self,
        partner_id: i64,
        status: Option<PartnerOrderStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<PartnerOrderRecord>> {
        // One read transaction: the page and its total come from the same snapshot.
        let mut tx = self.reader.begin().await?;
        let (ids, total): (Vec<i64>, i64) = match status {
            Some(status) => (
                sqlx::query_scalar(sql::PARTNER_ORDER_IDS_IN_STATUS)
                    .bind(partner_id)
                    .bind(page.size)
                    .bind(page.offset())
                    .bind(status.as_str())
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query_scalar(sql::COUNT_PARTNER_ORDERS_IN_STATUS)
                    .bind(partner_id)
                    .bind(status.as_str())
                    .fetch_one(&mut *tx)
                    .await?,
            ),
            None => (
                sqlx::query_scalar(sql::PARTNER_ORDER_IDS)
                    .bind(partner_id)
                    .bind(page.size)
                    .bind(page.offset())
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query_scalar(sql::COUNT_PARTNER_ORDERS)
                    .bind(partner_id)
                    .fetch_one(&mut *tx)
                    .await?,
            ),
        };
        let rows = sqlx::query(concat!(
            sql::partner_order_rows!(),
            " WHERE po.id IN (SELECT value FROM json_each($1))
             ORDER BY po.id DESC, oi.product_id"
        ))
        .bind(json_ids(ids.iter().copied()))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Page {
            items: partner_order_list_from_rows(&rows)?,
            page: page.page,
            size: page.size,
            total,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn fulfilment_audit(&self) -> StoreResult<FulfilmentAudit> {
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql::PARTNER_ORDER_STATES)
            .fetch_all(&mut *tx)
            .await?;
        let delivery_mismatches = sqlx::query_scalar(sql::DELIVERY_MISMATCHES)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FulfilmentAudit {
            states: rows
                .iter()
                .map(partner_order_states_from_row)
                .collect::<StoreResult<_>>()?,
            delivery_mismatches,
        })
    }
}

async fn load_partner_order(
    conn: &mut SqliteConnection,
    id: i64,
) -> StoreResult<Option<PartnerOrderRecord>> {
    let rows = sqlx::query(sql::PARTNER_ORDER_BY_ID)
        .bind(id)
        .fetch_all(conn)
        .await?;
    Ok(partner_order_list_from_rows(&rows)?.pop())
}
