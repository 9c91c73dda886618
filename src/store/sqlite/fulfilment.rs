//! Sellers' steps on partner orders, the partner's listing and the fulfilment audit on
//! SQLite. A step is one conditional `UPDATE … WHERE status = <from>` in a write
//! transaction: SQLite's single writer makes it atomic, and the condition makes a second
//! attempt (a retry, a second seller at once) change nothing.

use super::conn::{json_ids, snapshot, SqliteStore};
use super::order_reads::{load_order, load_partner_order};
use super::points::refund_share_in;
use super::{orders, outbox, returns, stock};
use crate::domain::events;
use crate::domain::fulfilment::{Advance, PartnerOrderStatus};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::rows::{partner_order_list_from_rows, partner_order_states_from_row};
use crate::store::{
    sql, FulfilmentAudit, FulfilmentOutcome, FulfilmentStore, Page, PageRequest,
    PartialCancelOutcome, PartnerOrderRecord, StoreError, StoreResult,
};
use async_trait::async_trait;

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

    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn cancel_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<PartialCancelOutcome> {
        let mut tx = self.write_tx().await?;
        let cancelled: Option<i64> = sqlx::query_scalar(sql::CANCEL_PARTNER_ORDER)
            .bind(id)
            .bind(reason)
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(order_id) = cancelled else {
            let current = load_partner_order(&mut tx, id).await?;
            tx.rollback().await?;
            return Ok(current.map_or(
                PartialCancelOutcome::NotFound,
                PartialCancelOutcome::Refused,
            ));
        };
        let part = load_partner_order(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
        let user_id: i64 = sqlx::query_scalar(sql::ORDER_OWNER)
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut units: Vec<(i64, i64)> = part
            .items
            .iter()
            .map(|i| (i.product_id, i.quantity))
            .collect();
        units.sort_unstable();
        let mut outgoing =
            stock::move_order_units(&mut tx, order_id, MovementKind::Return, &units, now).await?;
        if part.points_used > 0 {
            outgoing.push(refund_share_in(&mut tx, order_id, part.points_used, now).await?);
        }
        orders::book_refund(&mut tx, order_id, part.payable, now).await?;
        outgoing.push(events::partner_order_changed(
            events::PARTNER_ORDER_CANCELLED,
            &part.changed(user_id, now),
        ));
        let live: i64 = sqlx::query_scalar(sql::LIVE_PARTNER_ORDERS)
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
        if live == 0 {
            let (_, refunded) = orders::refund_emptied(&mut tx, order_id, now)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("order {order_id} of a paid part is not paid"))
                })?;
            outgoing.extend(refunded);
        } else {
            sqlx::query(sql::MARK_ORDER_DELIVERED)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
        }
        let order = load_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished")))?;
        outbox::append(&mut tx, &outgoing, now).await?;
        tx.commit().await?;
        Ok(PartialCancelOutcome::Done {
            partner_order: part,
            order,
        })
    }

    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn return_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome> {
        returns::return_part(self, id, reason, now).await
    }

    #[tracing::instrument(skip_all, fields(partner_id = partner_id, page = page.page, size = page.size))]
    async fn partner_orders(
        &self,
        partner_id: i64,
        status: Option<PartnerOrderStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<PartnerOrderRecord>> {
        let mut tx = snapshot(&self.reader).await?;
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
        let mut tx = snapshot(&self.reader).await?;
        let rows = sqlx::query(sql::PARTNER_ORDER_STATES)
            .fetch_all(&mut *tx)
            .await?;
        let delivery_mismatches = sqlx::query_scalar(sql::DELIVERY_MISMATCHES)
            .fetch_all(&mut *tx)
            .await?;
        let unbooked_returns = sqlx::query_scalar(sql::RETURNS_WITHOUT_REFUND_ENTRY)
            .fetch_all(&mut *tx)
            .await?;
        let stray_refund_entries = sqlx::query_scalar(sql::REFUND_ENTRIES_WITHOUT_RETURN)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FulfilmentAudit {
            states: rows
                .iter()
                .map(partner_order_states_from_row)
                .collect::<StoreResult<_>>()?,
            delivery_mismatches,
            unbooked_returns,
            stray_refund_entries,
        })
    }
}
