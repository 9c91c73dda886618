//! Sellers' steps on partner orders, the partner's listing and the fulfilment audit on
//! PostgreSQL.
//!
//! A step locks its order's row first (`FOR UPDATE`), as every order transition does
//! (`orders.rs`), then updates the partner order conditionally. The lock serialises the
//! steps of one order's parts with each other and with the order's own transitions: two
//! sellers delivering the last two parts at once cannot both miss that the other was the
//! last (each would see the other's part undelivered), and a confirmation's count of parts
//! still to deliver holds until it commits.

use super::conn::{snapshot, PgStore};
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
use sqlx::postgres::PgPool;

#[async_trait]
impl FulfilmentStore for PgStore {
    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn partner_order(&self, id: i64) -> StoreResult<Option<PartnerOrderRecord>> {
        let mut conn = self.pool.acquire().await?;
        load_partner_order(&mut conn, id).await
    }

    #[tracing::instrument(skip_all, fields(partner_order_id = id, step = step.name()))]
    async fn advance_partner_order(
        &self,
        id: i64,
        step: &Advance,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome> {
        advance(&self.pool, id, step, now).await
    }

    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn cancel_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<PartialCancelOutcome> {
        cancel(&self.pool, id, reason, now).await
    }

    #[tracing::instrument(skip_all, fields(partner_order_id = id))]
    async fn return_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome> {
        returns::return_part(&self.pool, id, reason, now).await
    }

    #[tracing::instrument(skip_all, fields(partner_id = partner_id, page = page.page, size = page.size))]
    async fn partner_orders(
        &self,
        partner_id: i64,
        status: Option<PartnerOrderStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<PartnerOrderRecord>> {
        listing(&self.pool, partner_id, status, page).await
    }

    #[tracing::instrument(skip_all)]
    async fn fulfilment_audit(&self) -> StoreResult<FulfilmentAudit> {
        let mut tx = snapshot(&self.pool).await?;
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

async fn advance(
    pool: &PgPool,
    id: i64,
    step: &Advance,
    now: Timestamp,
) -> StoreResult<FulfilmentOutcome> {
    let mut tx = pool.begin().await?;
    let owner: Option<(i64, i64)> = sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o JOIN partner_orders po ON po.order_id = o.id \
         WHERE po.id = $1 FOR UPDATE OF o",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((order_id, user_id)) = owner else {
        return Ok(FulfilmentOutcome::NotFound);
    };
    let (from, to) = step.change();
    let shipment = step.shipment();
    let moved = sqlx::query(sql::ADVANCE_PARTNER_ORDER)
        .bind(id)
        .bind(now.millis())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(shipment.map(|s| s.carrier()))
        .bind(shipment.map(|s| s.tracking_number()))
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() == 0 {
        // Nothing changed; the transaction rolls back when dropped.
        let current = load_partner_order(&mut tx, id).await?;
        return Ok(current.map_or(FulfilmentOutcome::NotFound, FulfilmentOutcome::Refused));
    }
    if to == PartnerOrderStatus::Delivered {
        sqlx::query(sql::MARK_ORDER_DELIVERED)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
    }
    let partner_order = load_partner_order(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
    let event =
        events::partner_order_changed(step.event_type(), &partner_order.changed(user_id, now));
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(FulfilmentOutcome::Done(partner_order))
}

/// Locks the order row first, as a step does, so a cancellation and a shipment of the same
/// part (or the buyer's refund of the order) are decided one after the other.
async fn cancel(
    pool: &PgPool,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> StoreResult<PartialCancelOutcome> {
    let mut tx = pool.begin().await?;
    let owner: Option<(i64, i64)> = sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o JOIN partner_orders po ON po.order_id = o.id \
         WHERE po.id = $1 FOR UPDATE OF o",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((order_id, user_id)) = owner else {
        return Ok(PartialCancelOutcome::NotFound);
    };
    let cancelled = sqlx::query(sql::CANCEL_PARTNER_ORDER)
        .bind(id)
        .bind(reason)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
    if cancelled.rows_affected() == 0 {
        // Nothing changed; the transaction rolls back when dropped.
        let current = load_partner_order(&mut tx, id).await?;
        return Ok(current.map_or(
            PartialCancelOutcome::NotFound,
            PartialCancelOutcome::Refused,
        ));
    }
    let part = load_partner_order(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
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
    let order = if live == 0 {
        let (order, refunded) = orders::refund_emptied(&mut tx, order_id, now).await?;
        outgoing.extend(refunded);
        order
    } else {
        sqlx::query(sql::MARK_ORDER_DELIVERED)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        load_order(&mut tx, order_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished")))?
    };
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(PartialCancelOutcome::Done {
        partner_order: part,
        order,
    })
}

async fn listing(
    pool: &PgPool,
    partner_id: i64,
    status: Option<PartnerOrderStatus>,
    page: PageRequest,
) -> StoreResult<Page<PartnerOrderRecord>> {
    let mut tx = snapshot(pool).await?;
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
        " WHERE po.id = ANY($1) ORDER BY po.id DESC, oi.product_id"
    ))
    .bind(&ids)
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
