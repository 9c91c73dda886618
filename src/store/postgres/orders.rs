//! Reading orders and moving them through their lifecycle (DESIGN §3). Placement, the hot
//! path, lives in `place.rs`.
//!
//! Every transition locks the order row first (`FOR UPDATE`), decides from the locked state,
//! then locks the stock rows in ascending product id order. Placement never locks an order
//! row, so the two paths cannot wait on each other in a cycle.

use super::conn::PgStore;
use super::order_reads::{list_orders, load_order};
use super::{benefits, outbox, place, stock};
use crate::domain::allocation::OrderRequest;
use crate::domain::events::{self, NewEvent};
use crate::domain::order::{CancelReason, MovementKind};
use crate::domain::{OrderStatus, Timestamp};
use crate::store::error::violates_unique;
use crate::store::rows::{order_status, Columns};
use crate::store::{
    sql, BatchResult, OrderRecord, OrderStore, Page, PageRequest, PaymentAttempt, StoreError,
    StoreResult, TransitionOutcome,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};

#[async_trait]
impl OrderStore for PgStore {
    #[tracing::instrument(skip_all, fields(requests = batch.len()))]
    async fn place_batch(
        &self,
        batch: &[OrderRequest],
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<BatchResult> {
        place::place_batch(&self.pool, batch, pay_by, now).await
    }

    #[tracing::instrument(skip_all, fields(order_id = id))]
    async fn order(&self, id: i64) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self.pool.acquire().await?;
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
            .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(page = page.page, size = page.size))]
    async fn list_orders(
        &self,
        user_id: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<OrderRecord>> {
        list_orders(&self.pool, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(order_id = payment.order_id))]
    async fn record_payment(&self, payment: &PaymentAttempt, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        mark_paid(&self.pool, order_id, payment, now).await
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id, reason = reason.as_str()))]
    async fn cancel_order(
        &self,
        order_id: i64,
        reason: CancelReason,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome> {
        cancel_order(&self.pool, order_id, reason, now).await
    }

    /// A plain read: the sweeper's transition re-checks state and deadline under the row
    /// lock, so two nodes sweeping the same order cannot both cancel it.
    #[tracing::instrument(skip_all)]
    async fn due_orders(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'pending_payment' AND pay_by <= $1 \
             ORDER BY pay_by, id LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn confirm_order(&self, order_id: i64, now: Timestamp) -> StoreResult<TransitionOutcome> {
        confirm_order(&self.pool, order_id, now).await
    }

    /// A plain read, like `due_orders`: `confirm_order` re-checks the state under the row
    /// lock.
    #[tracing::instrument(skip_all)]
    async fn due_confirmations(&self, cutoff: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::DUE_CONFIRMATIONS)
            .bind(cutoff.millis())
            .bind(limit.max(0))
            .fetch_all(&self.pool)
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
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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

/// The order row as locked for a transition.
struct Locked {
    status: OrderStatus,
    pay_by: Timestamp,
}

async fn lock_order(conn: &mut PgConnection, order_id: i64) -> StoreResult<Option<Locked>> {
    let row = sqlx::query("SELECT status, pay_by FROM orders WHERE id = $1 FOR UPDATE")
        .bind(order_id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Locked {
        status: order_status(&row.text("status")?)?,
        pay_by: row.ts("pay_by")?,
    }))
}

/// What one transition does: the new status, the reason recorded on the order, the stock
/// movement applied to every line, and the event that announces it.
struct Transition {
    to: OrderStatus,
    reason: Option<CancelReason>,
    movement: MovementKind,
    event_type: &'static str,
}

/// `pending_payment → paid` while `now < pay_by`, as in SQLite.
async fn mark_paid(
    pool: &PgPool,
    order_id: i64,
    payment: &PaymentAttempt,
    now: Timestamp,
) -> StoreResult<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let Some(locked) = lock_order(&mut tx, order_id).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    if locked.status != OrderStatus::PendingPayment || locked.pay_by <= now {
        return refused(&mut tx, order_id).await;
    }
    let paid = Transition {
        to: OrderStatus::Paid,
        reason: None,
        movement: MovementKind::Commit,
        event_type: events::ORDER_PAID,
    };
    let (order, outgoing) = apply(&mut tx, order_id, &paid, now).await?;
    insert_payment(&mut tx, payment, now)
        .await
        .map_err(approved_twice)?;
    pay_checkout(&mut tx, &payment.payment_key, now).await?;
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(TransitionOutcome::Done(order))
}

/// `pending_payment → cancelled` (an `Expired` cancel only once `pay_by <= now`), or for a
/// `Requested` cancel of a paid order, `paid → refunded`.
async fn cancel_order(
    pool: &PgPool,
    order_id: i64,
    reason: CancelReason,
    now: Timestamp,
) -> StoreResult<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let Some(locked) = lock_order(&mut tx, order_id).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    let expiring = reason == CancelReason::Expired;
    let transition = match locked.status {
        OrderStatus::PendingPayment if !expiring || locked.pay_by <= now => Transition {
            to: OrderStatus::Cancelled,
            reason: Some(reason),
            movement: MovementKind::Release,
            event_type: if expiring {
                events::ORDER_EXPIRED
            } else {
                events::ORDER_CANCELLED
            },
        },
        // Parts ship under this same row lock (`fulfilment.rs`), so the count holds until
        // the commit.
        OrderStatus::Paid if !expiring && shipped_parts(&mut tx, order_id).await? == 0 => {
            Transition {
                to: OrderStatus::Refunded,
                reason: Some(reason),
                movement: MovementKind::Return,
                event_type: events::ORDER_REFUNDED,
            }
        }
        _ => return refused(&mut tx, order_id).await,
    };
    let (order, outgoing) = apply(&mut tx, order_id, &transition, now).await?;
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(TransitionOutcome::Done(order))
}

/// `paid → confirmed` once no part is left to deliver. Nothing moves in the stock ledger:
/// payment already committed the holds.
async fn confirm_order(
    pool: &PgPool,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let Some(locked) = lock_order(&mut tx, order_id).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    // Partner orders move under this same row lock (`fulfilment.rs`), so the count holds
    // until the commit.
    let unsettled: i64 = sqlx::query_scalar(sql::UNSETTLED_PARTNER_ORDERS)
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
    if locked.status != OrderStatus::Paid || unsettled > 0 {
        return refused(&mut tx, order_id).await;
    }
    let order = set_status(&mut tx, order_id, OrderStatus::Confirmed, None, now).await?;
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
        order.status,
        None,
        now,
    );
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(TransitionOutcome::Done(order))
}

/// Nothing changes; the caller's transaction rolls back when dropped.
async fn refused(conn: &mut PgConnection, order_id: i64) -> StoreResult<TransitionOutcome> {
    Ok(match load_order(conn, order_id).await? {
        Some(order) => TransitionOutcome::Refused(order),
        None => TransitionOutcome::NotFound,
    })
}

/// Sets the locked order and its partner orders (but those cancelled on their own) to
/// `to`. Entering `paid` stamps `paid_at`; later transitions keep it. Returns the order as
/// it now is.
async fn set_status(
    conn: &mut PgConnection,
    order_id: i64,
    to: OrderStatus,
    reason: Option<CancelReason>,
    now: Timestamp,
) -> StoreResult<OrderRecord> {
    sqlx::query(
        "UPDATE orders SET status = $2, cancel_reason = COALESCE($3, cancel_reason), \
         updated_at = $4, paid_at = CASE WHEN $2 = 'paid' THEN $4 ELSE paid_at END \
         WHERE id = $1",
    )
    .bind(order_id)
    .bind(to.as_str())
    .bind(reason.map(CancelReason::as_str))
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    sqlx::query(sql::SET_PARTNER_ORDERS_STATUS)
        .bind(order_id)
        .bind(to.as_str())
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    load_order(conn, order_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished under its lock")))
}

/// Applies `t` to the locked order: status of the order and its partner orders, one
/// movement per line, its coupon and points. Returns the order as it now is and the events
/// to append, in SQLite's order (`stock.changed` per product, the coupon and points, then
/// the order event).
async fn apply(
    conn: &mut PgConnection,
    order_id: i64,
    t: &Transition,
    now: Timestamp,
) -> StoreResult<(OrderRecord, Vec<NewEvent>)> {
    let order = set_status(conn, order_id, t.to, t.reason, now).await?;
    let units = moved_units(&order);
    let mut outgoing = stock::move_order_units(conn, order_id, t.movement, &units, now).await?;
    outgoing.extend(benefits::settle(conn, &order, now).await?);
    if order.status == OrderStatus::Refunded {
        book_refund(conn, order_id, order.unrefunded(), now).await?;
    }
    outgoing.push(events::order_status(
        t.event_type,
        order.id,
        order.user_id,
        order.status,
        t.reason,
        now,
    ));
    Ok((order, outgoing))
}

async fn shipped_parts(conn: &mut PgConnection, order_id: i64) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(sql::SHIPPED_PARTNER_ORDERS)
        .bind(order_id)
        .fetch_one(conn)
        .await?)
}

/// The units of the parts that moved with the order, `(product_id, quantity)` ascending by
/// product (the order stock rows are locked in): those now in the order's status. Parts
/// cancelled on their own stay cancelled (`sql::SET_PARTNER_ORDERS_STATUS`) and their
/// stock came back when they were cancelled.
fn moved_units(order: &OrderRecord) -> Vec<(i64, i64)> {
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
    conn: &mut PgConnection,
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

/// `paid → refunded` of the locked order whose parts were all cancelled on their own,
/// inside the last cancellation's transaction: no stock moves (each part returned its
/// own), the coupon is issued again and the points hold becomes refunded (its shares were
/// refunded part by part). Returns the order and its events.
pub(super) async fn refund_emptied(
    conn: &mut PgConnection,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<(OrderRecord, Vec<NewEvent>)> {
    let reason = Some(CancelReason::PartsCancelled);
    let order = set_status(conn, order_id, OrderStatus::Refunded, reason, now).await?;
    let mut outgoing = benefits::settle(conn, &order, now).await?;
    outgoing.push(events::order_status(
        events::ORDER_REFUNDED,
        order.id,
        order.user_id,
        order.status,
        reason,
        now,
    ));
    Ok((order, outgoing))
}
