use super::{benefits, json_ids, move_stock, write_event, SqliteStore, Tx};
use crate::domain::allocation::OrderRequest;
use crate::domain::order::{CancelReason, MovementKind};
use crate::domain::{events, OrderStatus, Timestamp};
use crate::store::{
    BatchResult, OrderItemRecord, OrderRecord, OrderStore, Page, PageRequest, PartnerOrderRecord,
    PaymentAttempt, StoreError, StoreResult, TransitionOutcome,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

const ORDER_COLUMNS: &str = "id, user_id, status, total, coupon_id, discount, points_used,
    payable, pay_by, paid_at, cancel_reason, created_at, updated_at";

fn order_from_row(row: &SqliteRow) -> StoreResult<OrderRecord> {
    let status: String = row.try_get("status")?;
    Ok(OrderRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
        total: row.try_get("total")?,
        coupon_id: row.try_get("coupon_id")?,
        discount: row.try_get("discount")?,
        points_used: row.try_get("points_used")?,
        payable: row.try_get("payable")?,
        pay_by: Timestamp::from_millis(row.try_get("pay_by")?),
        paid_at: row
            .try_get::<Option<i64>, _>("paid_at")?
            .map(Timestamp::from_millis),
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        partner_orders: Vec::new(),
    })
}

/// Loads partner orders with their items for many orders at once.
async fn partner_orders_of(
    conn: &mut SqliteConnection,
    order_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<PartnerOrderRecord>>> {
    let rows = sqlx::query(
        "SELECT po.order_id, po.id, po.partner_id, po.status, po.subtotal,
                oi.product_id, oi.quantity, oi.unit_price, oi.line_total
         FROM partner_orders po JOIN order_items oi ON oi.partner_order_id = po.id
         WHERE po.order_id IN (SELECT value FROM json_each($1))
         ORDER BY po.order_id, po.partner_id, oi.product_id",
    )
    .bind(json_ids(order_ids.iter().copied()))
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<i64, Vec<PartnerOrderRecord>> = HashMap::new();
    for row in rows {
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

pub(super) async fn load_order(
    conn: &mut SqliteConnection,
    id: i64,
) -> StoreResult<Option<OrderRecord>> {
    let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut order = order_from_row(&row)?;
    order.partner_orders = partner_orders_of(conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok(Some(order))
}

/// Moves every line of an order through `kind` and writes one `stock.changed` per product.
async fn move_order_stock(
    tx: &mut Tx,
    order: &OrderRecord,
    kind: MovementKind,
    now: i64,
) -> StoreResult<()> {
    let mut lines: Vec<(i64, i64)> = order
        .partner_orders
        .iter()
        .flat_map(|p| p.items.iter().map(|i| (i.product_id, i.quantity)))
        .collect();
    lines.sort_unstable();
    for (product_id, quantity) in lines {
        let levels = move_stock(tx, product_id, kind, quantity, Some(order.id), None, now).await?;
        write_event(
            tx,
            &events::stock_changed(product_id, levels.on_hand, levels.held),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Moves the order's coupon and points along with the status it just entered.
async fn settle_benefits(tx: &mut Tx, order: &OrderRecord, now: Timestamp) -> StoreResult<()> {
    for event in benefits::settle(tx, order, now).await? {
        write_event(tx, &event, now.millis()).await?;
    }
    Ok(())
}

async fn insert_payment(
    tx: &mut SqliteConnection,
    payment: &PaymentAttempt,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(payment.order_id)
    .bind(&payment.payment_key)
    .bind(payment.amount)
    .bind(payment.outcome.as_str())
    .bind(payment.detail.as_deref())
    .bind(now.millis())
    .execute(tx)
    .await?;
    Ok(())
}

/// Sets the order and its partner orders to `to` if the order is in `from` (and, when
/// given, its deadline satisfies the check). Entering `paid` stamps `paid_at`; later
/// transitions keep it. Returns the order as it now is.
async fn transition(
    tx: &mut Tx,
    order_id: i64,
    from: OrderStatus,
    to: OrderStatus,
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
    .execute(&mut **tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("UPDATE partner_orders SET status = $2 WHERE order_id = $1")
        .bind(order_id)
        .bind(to.as_str())
        .execute(&mut **tx)
        .await?;
    load_order(tx, order_id).await
}

impl SqliteStore {
    async fn refused_or_missing(&self, tx: Tx, order_id: i64) -> StoreResult<TransitionOutcome> {
        let mut tx = tx;
        let current = load_order(&mut tx, order_id).await?;
        tx.rollback().await?;
        Ok(match current {
            Some(order) => TransitionOutcome::Refused(order),
            None => TransitionOutcome::NotFound,
        })
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn place_batch(
        &self,
        batch: &[OrderRequest],
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<BatchResult> {
        super::place::place_batch(self, batch, pay_by, now).await
    }

    async fn order(&self, id: i64) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self.reader.acquire().await?;
        load_order(&mut conn, id).await
    }

    async fn list_orders(
        &self,
        user_id: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<OrderRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR user_id = $1)
             ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *conn)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE ($1 IS NULL OR user_id = $1)")
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
        let mut items = rows
            .iter()
            .map(order_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<i64> = items.iter().map(|o| o.id).collect();
        let mut partner_orders = partner_orders_of(&mut conn, &ids).await?;
        for order in &mut items {
            order.partner_orders = partner_orders.remove(&order.id).unwrap_or_default();
        }
        Ok(Page {
            items,
            page: page.page,
            size: page.size,
            total,
        })
    }

    async fn record_payment(&self, payment: &PaymentAttempt, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_payment(&mut tx, payment, now).await?;
        let event = events::payment_failed(payment.order_id, payment.outcome.as_str());
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_paid(
        &self,
        order_id: i64,
        payment: &PaymentAttempt,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        let paid = transition(
            &mut tx,
            order_id,
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            None,
            Some((">", now.millis())),
            now,
        )
        .await?;
        let Some(order) = paid else {
            return self.refused_or_missing(tx, order_id).await;
        };
        move_order_stock(&mut tx, &order, MovementKind::Commit, now.millis()).await?;
        settle_benefits(&mut tx, &order, now).await?;
        insert_payment(&mut tx, payment, now).await?;
        write_event(
            &mut tx,
            &events::order_status(
                events::ORDER_PAID,
                order.id,
                order.user_id,
                OrderStatus::Paid,
                None,
                now,
            ),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

    async fn cancel_order(
        &self,
        order_id: i64,
        reason: CancelReason,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        let expiring = reason == CancelReason::Expired;
        let deadline = expiring.then_some(("<=", now.millis()));
        let cancelled = transition(
            &mut tx,
            order_id,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
            Some(reason),
            deadline,
            now,
        )
        .await?;
        let (order, kind, event_type) = match cancelled {
            Some(order) => {
                let event_type = if expiring {
                    events::ORDER_EXPIRED
                } else {
                    events::ORDER_CANCELLED
                };
                (order, MovementKind::Release, event_type)
            }
            None if !expiring => {
                match transition(
                    &mut tx,
                    order_id,
                    OrderStatus::Paid,
                    OrderStatus::Refunded,
                    Some(reason),
                    None,
                    now,
                )
                .await?
                {
                    Some(order) => (order, MovementKind::Return, events::ORDER_REFUNDED),
                    None => return self.refused_or_missing(tx, order_id).await,
                }
            }
            None => return self.refused_or_missing(tx, order_id).await,
        };
        move_order_stock(&mut tx, &order, kind, now.millis()).await?;
        settle_benefits(&mut tx, &order, now).await?;
        write_event(
            &mut tx,
            &events::order_status(
                event_type,
                order.id,
                order.user_id,
                order.status,
                Some(reason),
                now,
            ),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

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

    async fn confirm_order(&self, order_id: i64, now: Timestamp) -> StoreResult<TransitionOutcome> {
        let mut tx = self.write_tx().await?;
        let confirmed = transition(
            &mut tx,
            order_id,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            None,
            None,
            now,
        )
        .await?;
        let Some(order) = confirmed else {
            return self.refused_or_missing(tx, order_id).await;
        };
        write_event(
            &mut tx,
            &events::order_status(
                events::ORDER_CONFIRMED,
                order.id,
                order.user_id,
                OrderStatus::Confirmed,
                None,
                now,
            ),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Done(order))
    }

    async fn due_confirmations(&self, cutoff: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'paid' AND paid_at <= $1
             ORDER BY paid_at, id LIMIT $2",
        )
        .bind(cutoff.millis())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }
}
