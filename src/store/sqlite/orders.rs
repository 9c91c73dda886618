//! Reading orders and moving them through their lifecycle on SQLite (DESIGN §3).
//! Placement, the hot path, lives in `place.rs`.
//!
//! Every transition is one conditional `UPDATE … WHERE status = <from>` in a write
//! transaction: SQLite's single writer makes it atomic, and the condition makes a second
//! attempt (a retry, another process on the same file) change nothing.

use super::conn::{snapshot, SqliteStore, WriteTx};
use super::order_reads::{list_orders, load_order};
use super::{benefits, outbox, place, stock};
use crate::domain::allocation::OrderRequest;
use crate::domain::events::{self, NewEvent};
use crate::domain::order::{CancelReason, MovementKind};
use crate::domain::{OrderStatus, Timestamp};
use crate::store::error::violates_unique;
use crate::store::{
    sql, BatchResult, OrderRecord, OrderStore, Page, PageRequest, PaymentAttempt, StoreError,
    StoreResult, TransitionOutcome,
};
use async_trait::async_trait;
use sqlx::SqliteConnection;

#[async_trait]
impl OrderStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(requests = batch.len()))]
    async fn place_batch(
        &self,
        batch: &[OrderRequest],
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<BatchResult> {
        place::place_batch(self, batch, pay_by, now).await
    }

    #[tracing::instrument(skip_all, fields(order_id = id))]
    async fn order(&self, id: i64) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self.reader.acquire().await?;
        load_order(&mut conn, id).await
    }

    async fn order_of_attempt(
        &self,
        user_id: i64,
        idempotency_key: &str,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(sql::ORDER_OF_ATTEMPT)
            .bind(user_id)
            .bind(idempotency_key)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn recent_attempts(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        Ok(sqlx::query_as(sql::RECENT_ATTEMPTS)
            .bind(since.millis())
            .bind(limit)
            .fetch_all(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(page = page.page, size = page.size))]
    async fn list_orders(
        &self,
        user_id: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<OrderRecord>> {
        let mut tx = snapshot(&self.reader).await?;
        list_orders(&mut tx, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(order_id = payment.order_id))]
    async fn record_payment(&self, payment: &PaymentAttempt, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_payment(&mut tx, payment, now).await?;
        let event = events::payment_failed(payment.order_id, payment.outcome.as_str());
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn mark_paid(
        &self,
        order_id: i64,
        payment: &PaymentAttempt,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        let change = (OrderStatus::PendingPayment, OrderStatus::Paid);
        let deadline = Some((">", now.millis()));
        let Some(order) = transition(&mut tx, order_id, change, None, deadline, now).await? else {
            return refused_or_missing(tx, order_id).await;
        };
        let paid = (MovementKind::Commit, events::ORDER_PAID);
        let outgoing = apply(&mut tx, &order, paid, None, now).await?;
        insert_payment(&mut tx, payment, now)
            .await
            .map_err(approved_twice)?;
        pay_checkout(&mut tx, &payment.payment_key, now).await?;
        outbox::append(&mut tx, &outgoing, now).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id, reason = reason.as_str()))]
    async fn cancel_order(
        &self,
        order_id: i64,
        reason: CancelReason,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        let Some((order, effect)) = cancel_or_refund(&mut tx, order_id, reason, now).await? else {
            return refused_or_missing(tx, order_id).await;
        };
        let outgoing = apply(&mut tx, &order, effect, Some(reason), now).await?;
        outbox::append(&mut tx, &outgoing, now).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

    #[tracing::instrument(skip_all)]
    async fn due_orders(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'pending_payment' AND pay_by <= $1
             ORDER BY pay_by LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn confirm_order(&self, order_id: i64, now: Timestamp) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        // Under the write lock no part can move between this count and the update.
        let unsettled: i64 = sqlx::query_scalar(sql::UNSETTLED_PARTNER_ORDERS)
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
        if unsettled > 0 {
            return refused_or_missing(tx, order_id).await;
        }
        let change = (OrderStatus::Paid, OrderStatus::Confirmed);
        let Some(order) = transition(&mut tx, order_id, change, None, None, now).await? else {
            return refused_or_missing(tx, order_id).await;
        };
        // The purchase enters the sellers' books with the confirmation.
        sqlx::query(sql::INSERT_SALE_ENTRIES)
            .bind(order_id)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        let event = events::order_status(
            events::ORDER_CONFIRMED,
            order.id,
            order.user_id,
            OrderStatus::Confirmed,
            None,
            now,
        );
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

    #[tracing::instrument(skip_all)]
    async fn due_confirmations(&self, cutoff: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::DUE_CONFIRMATIONS)
            .bind(cutoff.millis())
            .bind(limit)
            .fetch_all(&self.reader)
            .await?)
    }
}

/// The payment id was approved for another order already: the unique index
/// `payments_one_approved_key` (one payment, one order) refused it.
fn approved_twice(error: StoreError) -> StoreError {
    match error {
        StoreError::Database(e) if violates_unique(&e, "payments_one_approved_key") => {
            StoreError::Conflict("payment_key_reused")
        }
        other => other,
    }
}

/// The checkout the order was paid under is paid, in the payment's transaction.
async fn pay_checkout(
    conn: &mut SqliteConnection,
    payment_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(sql::PAY_CHECKOUT)
        .bind(payment_id)
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_payment(
    conn: &mut SqliteConnection,
    payment: &PaymentAttempt,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_PAYMENT)
        .bind(payment.order_id)
        .bind(&payment.payment_key)
        .bind(payment.amount)
        .bind(payment.outcome.as_str())
        .bind(payment.detail.as_deref())
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets the order and its partner orders (but those cancelled on their own) `from → to` if
/// the order is in `from` (and, when given, its deadline passes the check). Entering `paid`
/// stamps `paid_at`; later transitions keep it. Returns the order as it now is.
async fn transition(
    conn: &mut SqliteConnection,
    order_id: i64,
    (from, to): (OrderStatus, OrderStatus),
    reason: Option<CancelReason>,
    deadline: Option<(&'static str, i64)>,
    now: Timestamp,
) -> StoreResult<Option<OrderRecord>> {
    let deadline_sql = match deadline {
        Some((op, _)) => format!("AND pay_by {op} $6"),
        None => "AND $6 IS NULL".to_owned(),
    };
    let changed = sqlx::query(&format!(
        "UPDATE orders SET status = $2, cancel_reason = COALESCE($4, cancel_reason), updated_at = $5,
             paid_at = CASE WHEN $2 = 'paid' THEN $5 ELSE paid_at END
         WHERE id = $1 AND status = $3 {deadline_sql}"
    ))
    .bind(order_id)
    .bind(to.as_str())
    .bind(from.as_str())
    .bind(reason.map(CancelReason::as_str))
    .bind(now.millis())
    .bind(deadline.map(|(_, at)| at))
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query(sql::SET_PARTNER_ORDERS_STATUS)
        .bind(order_id)
        .bind(to.as_str())
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    load_order(conn, order_id).await
}

/// `pending_payment → cancelled` (an `Expired` cancel only once `pay_by <= now`), or for a
/// `Requested` cancel of a paid order, `paid → refunded`; with the stock movement and event
/// of whichever happened, `None` if neither could.
async fn cancel_or_refund(
    conn: &mut SqliteConnection,
    order_id: i64,
    reason: CancelReason,
    now: Timestamp,
) -> StoreResult<Option<(OrderRecord, (MovementKind, &'static str))>> {
    let expiring = reason == CancelReason::Expired;
    let deadline = expiring.then_some(("<=", now.millis()));
    let change = (OrderStatus::PendingPayment, OrderStatus::Cancelled);
    if let Some(order) = transition(conn, order_id, change, Some(reason), deadline, now).await? {
        let event_type = if expiring {
            events::ORDER_EXPIRED
        } else {
            events::ORDER_CANCELLED
        };
        return Ok(Some((order, (MovementKind::Release, event_type))));
    }
    if expiring {
        return Ok(None);
    }
    // Under the write lock no part can ship between this count and the refund.
    let shipped: i64 = sqlx::query_scalar(sql::SHIPPED_PARTNER_ORDERS)
        .bind(order_id)
        .fetch_one(&mut *conn)
        .await?;
    if shipped > 0 {
        return Ok(None);
    }
    let change = (OrderStatus::Paid, OrderStatus::Refunded);
    let refunded = transition(conn, order_id, change, Some(reason), None, now).await?;
    Ok(refunded.map(|order| (order, (MovementKind::Return, events::ORDER_REFUNDED))))
}

/// What follows a transition of `order`: one `movement` per line, its coupon and points,
/// then `event_type`. Returns the events in that order (`stock.changed` per product, the
/// coupon and points, the order event), as PostgreSQL does.
async fn apply(
    conn: &mut SqliteConnection,
    order: &OrderRecord,
    (movement, event_type): (MovementKind, &'static str),
    reason: Option<CancelReason>,
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let units = moved_units(order);
    let mut outgoing = stock::move_order_units(conn, order.id, movement, &units, now).await?;
    outgoing.extend(benefits::settle(conn, order, now).await?);
    if order.status == OrderStatus::Refunded {
        book_refund(conn, order.id, order.unrefunded(), now).await?;
    }
    outgoing.push(events::order_status(
        event_type,
        order.id,
        order.user_id,
        order.status,
        reason,
        now,
    ));
    Ok(outgoing)
}

/// The units of the parts that moved with the order, `(product_id, quantity)` ascending by
/// product: those now in the order's status. Parts cancelled on their own stay cancelled
/// (`sql::SET_PARTNER_ORDERS_STATUS`) and their stock came back when they were cancelled.
pub(super) fn moved_units(order: &OrderRecord) -> Vec<(i64, i64)> {
    let mut units: Vec<(i64, i64)> = order
        .partner_orders
        .iter()
        .filter(|p| p.status.as_str() == order.status.as_str())
        .flat_map(|p| p.items.iter().map(|i| (i.product_id, i.quantity)))
        .collect();
    units.sort_unstable();
    units
}

/// Books `amount` won owed back to the buyer of `order_id` as a `refunded` payment row;
/// nothing for nothing.
pub(super) async fn book_refund(
    conn: &mut SqliteConnection,
    order_id: i64,
    amount: i64,
    now: Timestamp,
) -> StoreResult<()> {
    if amount <= 0 {
        return Ok(());
    }
    sqlx::query(sql::INSERT_REFUND)
        .bind(order_id)
        .bind(amount)
        .bind("refund")
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// `paid → refunded` of an order whose parts were all cancelled on their own, inside the
/// last cancellation's transaction: no stock moves (each part returned its own), the
/// coupon is issued again and the points hold becomes refunded (its shares were refunded
/// part by part). Returns the order and its events; `None` if the order is not paid.
pub(super) async fn refund_emptied(
    conn: &mut SqliteConnection,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<Option<(OrderRecord, Vec<NewEvent>)>> {
    let change = (OrderStatus::Paid, OrderStatus::Refunded);
    let reason = Some(CancelReason::PartsCancelled);
    let Some(order) = transition(conn, order_id, change, reason, None, now).await? else {
        return Ok(None);
    };
    let mut outgoing = benefits::settle(conn, &order, now).await?;
    outgoing.push(events::order_status(
        events::ORDER_REFUNDED,
        order.id,
        order.user_id,
        order.status,
        reason,
        now,
    ));
    Ok(Some((order, outgoing)))
}

/// Nothing changed: the order as it is, or `NotFound`.
async fn refused_or_missing(mut tx: WriteTx, order_id: i64) -> StoreResult<TransitionOutcome> {
    let current = load_order(&mut tx, order_id).await?;
    tx.rollback().await?;
    Ok(match current {
        Some(order) => TransitionOutcome::Refused(order),
        None => TransitionOutcome::NotFound,
    })
}
