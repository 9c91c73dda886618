//! Reading orders and moving them through their lifecycle (DESIGN §3). Placement, the hot
//! path, lives in `place.rs`.
//!
//! Every transition locks the order row first (`FOR UPDATE`), decides from the locked state,
//! then locks the stock rows in ascending product id order. Placement never locks an order
//! row, so the two paths cannot wait on each other in a cycle.

use super::{benefits, outbox, place, stock, ts, PgStore};
use crate::domain::allocation::OrderRequest;
use crate::domain::events::{self, NewEvent};
use crate::domain::order::{CancelReason, MovementKind};
use crate::domain::{OrderStatus, Timestamp};
use crate::store::{
    BatchResult, OrderItemRecord, OrderRecord, OrderStore, Page, PageRequest, PartnerOrderRecord,
    PaymentAttempt, StoreError, StoreResult, TransitionOutcome,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::Row;
use std::collections::HashMap;

fn order_from_row(row: &PgRow) -> StoreResult<OrderRecord> {
    let status: String = row.try_get("status")?;
    Ok(OrderRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: parse_status(&status)?,
        total: row.try_get("total")?,
        coupon_id: row.try_get("coupon_id")?,
        discount: row.try_get("discount")?,
        points_used: row.try_get("points_used")?,
        payable: row.try_get("payable")?,
        pay_by: ts(row, "pay_by")?,
        paid_at: row
            .try_get::<Option<i64>, _>("paid_at")?
            .map(Timestamp::from_millis),
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        partner_orders: Vec::new(),
    })
}

pub(super) fn parse_status(raw: &str) -> StoreResult<OrderStatus> {
    OrderStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("order status {raw:?}")))
}

/// Loads whole orders (partner orders and items included) in three statements whatever
/// their number; returned in ascending id order, missing ids skipped.
pub(super) async fn load_orders(
    conn: &mut PgConnection,
    ids: &[i64],
) -> StoreResult<Vec<OrderRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT id, user_id, status, total, coupon_id, discount, points_used, payable, pay_by, \
         paid_at, cancel_reason, created_at, updated_at FROM orders WHERE id = ANY($1) \
         ORDER BY id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .iter()
        .map(order_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut partner_orders = partner_orders_of(conn, ids).await?;
    for order in &mut orders {
        order.partner_orders = partner_orders.remove(&order.id).unwrap_or_default();
    }
    Ok(orders)
}

/// Partner orders ascending by partner id, each with its items ascending by product id.
async fn partner_orders_of(
    conn: &mut PgConnection,
    order_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<PartnerOrderRecord>>> {
    let rows = sqlx::query(
        "SELECT po.order_id, po.id, po.partner_id, po.status, po.subtotal, \
                oi.product_id, oi.quantity, oi.unit_price, oi.line_total \
         FROM partner_orders po JOIN order_items oi ON oi.partner_order_id = po.id \
         WHERE po.order_id = ANY($1) \
         ORDER BY po.order_id, po.partner_id, oi.product_id",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<i64, Vec<PartnerOrderRecord>> = HashMap::new();
    for row in &rows {
        let partner_orders = out.entry(row.try_get("order_id")?).or_default();
        let id: i64 = row.try_get("id")?;
        if partner_orders.last().map(|p| p.id) != Some(id) {
            partner_orders.push(PartnerOrderRecord {
                id,
                partner_id: row.try_get("partner_id")?,
                status: row.try_get("status")?,
                subtotal: row.try_get("subtotal")?,
                items: Vec::new(),
            });
        }
        if let Some(current) = partner_orders.last_mut() {
            current.items.push(OrderItemRecord {
                product_id: row.try_get("product_id")?,
                quantity: row.try_get("quantity")?,
                unit_price: row.try_get("unit_price")?,
                line_total: row.try_get("line_total")?,
            });
        }
    }
    Ok(out)
}

async fn load_order(conn: &mut PgConnection, id: i64) -> StoreResult<Option<OrderRecord>> {
    Ok(load_orders(conn, &[id]).await?.pop())
}

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
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'paid' AND paid_at <= $1 \
             ORDER BY paid_at, id LIMIT $2",
        )
        .bind(cutoff.millis())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Two statement texts rather than `($1 IS NULL OR user_id = $1)`, so a buyer's page uses
/// the `(user_id, id)` index under a cached generic plan.
async fn list_orders(
    pool: &PgPool,
    user_id: Option<i64>,
    page: PageRequest,
) -> StoreResult<Page<OrderRecord>> {
    let mut conn = pool.acquire().await?;
    let (ids, total): (Vec<i64>, i64) = match user_id {
        Some(user_id) => {
            let ids = sqlx::query_scalar(
                "SELECT id FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            )
            .bind(user_id)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *conn)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
            (ids, total)
        }
        None => {
            let ids =
                sqlx::query_scalar("SELECT id FROM orders ORDER BY id DESC LIMIT $1 OFFSET $2")
                    .bind(page.size)
                    .bind(page.offset())
                    .fetch_all(&mut *conn)
                    .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
                .fetch_one(&mut *conn)
                .await?;
            (ids, total)
        }
    };
    let mut items = load_orders(&mut conn, &ids).await?;
    items.reverse(); // loaded ascending; the page is newest first
    Ok(Page {
        items,
        page: page.page,
        size: page.size,
        total,
    })
}

async fn insert_payment(
    conn: &mut PgConnection,
    payment: &PaymentAttempt,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
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
    let status: String = row.try_get("status")?;
    Ok(Some(Locked {
        status: parse_status(&status)?,
        pay_by: ts(&row, "pay_by")?,
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
    insert_payment(&mut tx, payment, now).await?;
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
        OrderStatus::Paid if !expiring => Transition {
            to: OrderStatus::Refunded,
            reason: Some(reason),
            movement: MovementKind::Return,
            event_type: events::ORDER_REFUNDED,
        },
        _ => return refused(&mut tx, order_id).await,
    };
    let (order, outgoing) = apply(&mut tx, order_id, &transition, now).await?;
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(TransitionOutcome::Done(order))
}

/// `paid → confirmed`. Nothing moves in the stock ledger: payment already committed the
/// holds. Once paid, `paid_at` never changes, so the state is the only thing to re-check.
async fn confirm_order(
    pool: &PgPool,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let Some(locked) = lock_order(&mut tx, order_id).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    if locked.status != OrderStatus::Paid {
        return refused(&mut tx, order_id).await;
    }
    let order = set_status(&mut tx, order_id, OrderStatus::Confirmed, None, now).await?;
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

/// Sets the locked order and its partner orders to `to`. Entering `paid` stamps `paid_at`;
/// later transitions keep it. Returns the order as it now is.
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
    sqlx::query("UPDATE partner_orders SET status = $2 WHERE order_id = $1")
        .bind(order_id)
        .bind(to.as_str())
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
    let mut units: Vec<(i64, i64)> = order
        .partner_orders
        .iter()
        .flat_map(|p| p.items.iter().map(|i| (i.product_id, i.quantity)))
        .collect();
    units.sort_unstable();
    let mut outgoing = stock::move_order_units(conn, order_id, t.movement, &units, now).await?;
    outgoing.extend(benefits::settle(conn, &order, now).await?);
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
