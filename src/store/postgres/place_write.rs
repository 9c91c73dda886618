//! Writing a placement batch's accepted orders on PostgreSQL: one bulk statement per table
//! (`UNNEST` of parallel arrays), ids drawn by the database and matched back by key, the
//! stock holds through `stock.rs`, then, order by order, the points and coupons the orders
//! hold, and the events last (as `outbox::append` requires).

use super::{benefits, outbox, stock};
use crate::domain::allocation::{Allocation, OrderRequest, PlannedOrder};
use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::{OrderStatus, Timestamp};
use crate::store::rows::Columns;
use crate::store::{OrderItemRecord, OrderRecord, PartnerOrderRecord, StoreError, StoreResult};
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::{BTreeMap, HashMap};

/// SQLSTATE of `deadlock_detected`.
const DEADLOCK_DETECTED: &str = "40P01";

/// The error that sends the placement writer to its one-by-one retry.
const IDEMPOTENCY_RACE: StoreError = StoreError::Conflict("idempotency_race");

/// An accepted request: its index in the batch and its plan.
pub(super) type Accepted<'a> = (usize, &'a PlannedOrder);

/// Writes every accepted order and its holds; returns the placed records by request index,
/// and the id of the last event written.
pub(super) async fn write_accepted(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    accepted: &[Accepted<'_>],
    allocation: &Allocation,
    levels: &BTreeMap<i64, stock::Levels>,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<(HashMap<usize, OrderRecord>, Option<i64>)> {
    let order_ids = insert_orders(conn, batch, accepted, pay_by, now).await?;
    let partner_order_ids = insert_partner_orders(conn, accepted, &order_ids).await?;
    insert_items(conn, batch, accepted, &order_ids, &partner_order_ids).await?;
    let changed = hold_stock(conn, accepted, &order_ids, allocation, levels, now).await?;
    let mut outgoing: Vec<NewEvent> = accepted
        .iter()
        .zip(&order_ids)
        .map(|((i, _), id)| events::order_placed(*id, batch[*i].user_id, now))
        .collect();
    outgoing.extend(changed);
    let records: Vec<(usize, OrderRecord)> = accepted
        .iter()
        .zip(&order_ids)
        .map(|((i, plan), id)| {
            let record = placed_record(*id, &batch[*i], plan, &partner_order_ids, pay_by, now);
            (*i, record)
        })
        .collect();
    for (_, order) in &records {
        if order.coupon_id.is_some() || order.points_used > 0 {
            outgoing.extend(benefits::hold(conn, order, now).await?);
        }
    }
    let last_event_id = outbox::append(conn, &outgoing, now).await?;
    Ok((records.into_iter().collect(), last_event_id))
}

/// Inserts the orders in arrival order (so ids follow arrival) and returns their ids,
/// aligned with `accepted`.
async fn insert_orders(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    accepted: &[Accepted<'_>],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let users: Vec<i64> = accepted.iter().map(|(i, _)| batch[*i].user_id).collect();
    let keys: Vec<&str> = accepted
        .iter()
        .map(|(i, _)| batch[*i].idempotency_key.as_str())
        .collect();
    let hashes: Vec<&str> = accepted
        .iter()
        .map(|(i, _)| batch[*i].request_hash.as_str())
        .collect();
    let money = |f: fn(&PlannedOrder) -> i64| -> Vec<i64> {
        accepted.iter().map(|(_, plan)| f(plan)).collect()
    };
    let coupons: Vec<Option<i64>> = accepted.iter().map(|(_, plan)| plan.coupon_id).collect();
    let result = sqlx::query(
        "INSERT INTO orders (user_id, idempotency_key, request_hash, status, total, coupon_id, \
             discount, points_used, payable, pay_by, created_at, updated_at) \
         SELECT o.user_id, o.idempotency_key, o.request_hash, 'pending_payment', o.total, \
                o.coupon_id, o.discount, o.points_used, o.payable, $9, $10, $10 \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::bigint[], $7::bigint[], $8::bigint[]) \
              WITH ORDINALITY AS o(user_id, idempotency_key, request_hash, total, coupon_id, \
                                   discount, points_used, payable, ord) \
         ORDER BY o.ord \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING \
         RETURNING id, user_id, idempotency_key",
    )
    .bind(&users)
    .bind(&keys)
    .bind(&hashes)
    .bind(money(|p| p.total.get()))
    .bind(&coupons)
    .bind(money(|p| p.discount.get()))
    .bind(money(|p| p.points.get()))
    .bind(money(|p| p.payable.get()))
    .bind(pay_by.millis())
    .bind(now.millis())
    .fetch_all(&mut *conn)
    .await;
    let rows = match result {
        Ok(rows) => rows,
        // Two nodes inserting the same two keys in opposite orders wait on each other's
        // unique index entries; PostgreSQL aborts one. That is the same race, not a bug.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(DEADLOCK_DETECTED) => {
            return Err(IDEMPOTENCY_RACE)
        }
        Err(e) => return Err(e.into()),
    };
    inserted_ids(&rows, &users, &keys)
}

/// The id inserted for each `(user, key)`, in their order. A key that inserted nothing
/// was taken by a concurrent batch since this one read it: `Conflict("idempotency_race")`.
fn inserted_ids(rows: &[PgRow], users: &[i64], keys: &[&str]) -> StoreResult<Vec<i64>> {
    let mut ids: HashMap<(i64, String), i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = (row.int("user_id")?, row.text("idempotency_key")?);
        ids.insert(key, row.int("id")?);
    }
    users
        .iter()
        .zip(keys)
        .map(|(user, key)| {
            ids.get(&(*user, (*key).to_owned()))
                .copied()
                .ok_or(IDEMPOTENCY_RACE)
        })
        .collect()
}

/// Returns partner order ids by `(order_id, partner_id)`.
async fn insert_partner_orders(
    conn: &mut PgConnection,
    accepted: &[Accepted<'_>],
    order_ids: &[i64],
) -> StoreResult<HashMap<(i64, i64), i64>> {
    let mut orders = Vec::new();
    let mut partners = Vec::new();
    let mut subtotals = Vec::new();
    let (mut discounts, mut points, mut payables) = (Vec::new(), Vec::new(), Vec::new());
    for ((_, plan), order_id) in accepted.iter().zip(order_ids) {
        for partner_order in &plan.partner_orders {
            orders.push(*order_id);
            partners.push(partner_order.partner_id);
            subtotals.push(partner_order.subtotal.get());
            discounts.push(partner_order.share.discount.get());
            points.push(partner_order.share.points.get());
            payables.push(partner_order.share.payable.get());
        }
    }
    let rows = sqlx::query(
        // Each part keeps its partner's commission rate as it is now: settlement charges the
        // rate at placement, whatever the partner's rate becomes.
        "INSERT INTO partner_orders (order_id, partner_id, status, subtotal, discount, \
             points_used, payable, commission_rate_bps) \
         SELECT p.order_id, p.partner_id, 'pending_payment', p.subtotal, p.discount, \
             p.points_used, p.payable, pa.commission_rate_bps \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                     $6::bigint[]) \
              WITH ORDINALITY AS p(order_id, partner_id, subtotal, discount, points_used, \
                                   payable, ord) \
         JOIN partners pa ON pa.id = p.partner_id \
         ORDER BY p.ord \
         RETURNING id, order_id, partner_id",
    )
    .bind(&orders)
    .bind(&partners)
    .bind(&subtotals)
    .bind(&discounts)
    .bind(&points)
    .bind(&payables)
    .fetch_all(conn)
    .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in &rows {
        ids.insert(
            (row.int("order_id")?, row.int("partner_id")?),
            row.int("id")?,
        );
    }
    Ok(ids)
}

async fn insert_items(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    accepted: &[Accepted<'_>],
    order_ids: &[i64],
    partner_order_ids: &HashMap<(i64, i64), i64>,
) -> StoreResult<()> {
    let mut columns: [Vec<i64>; 7] = Default::default();
    for ((i, plan), order_id) in accepted.iter().zip(order_ids) {
        for partner_order in &plan.partner_orders {
            let key = (*order_id, partner_order.partner_id);
            let partner_order_id = *partner_order_ids
                .get(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("no partner order for {key:?}")))?;
            for line in &partner_order.lines {
                let values = [
                    *order_id,
                    partner_order_id,
                    batch[*i].user_id,
                    line.product_id,
                    line.quantity.get(),
                    line.unit_price.get(),
                    line.line_total.get(),
                ];
                for (column, value) in columns.iter_mut().zip(values) {
                    column.push(value);
                }
            }
        }
    }
    let [orders, partner_orders, users, products, quantities, prices, totals] = columns;
    sqlx::query(
        "INSERT INTO order_items (order_id, partner_order_id, user_id, product_id, quantity, \
             unit_price, line_total) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
                              $5::bigint[], $6::bigint[], $7::bigint[])",
    )
    .bind(&orders)
    .bind(&partner_orders)
    .bind(&users)
    .bind(&products)
    .bind(&quantities)
    .bind(&prices)
    .bind(&totals)
    .execute(conn)
    .await?;
    Ok(())
}

/// One hold movement per order line, in the order SQLite writes them (order, then partner,
/// then product), each carrying the running balance; then one balance update per product.
/// Returns one `stock.changed` per product held, ascending by id.
async fn hold_stock(
    conn: &mut PgConnection,
    accepted: &[Accepted<'_>],
    order_ids: &[i64],
    allocation: &Allocation,
    levels: &BTreeMap<i64, stock::Levels>,
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let mut running = levels.clone();
    let mut movements = Vec::new();
    for ((_, plan), order_id) in accepted.iter().zip(order_ids) {
        for line in plan.partner_orders.iter().flat_map(|p| &p.lines) {
            let quantity = line.quantity.get();
            let balance = running
                .get_mut(&line.product_id)
                .ok_or_else(|| StoreError::Corrupt(format!("{} not locked", line.product_id)))?;
            balance.1 += quantity;
            debug_assert!(
                balance.1 <= balance.0,
                "allocation over-held {}",
                line.product_id
            );
            movements.push(stock::Movement {
                product_id: line.product_id,
                kind: MovementKind::Hold,
                quantity,
                order_id: Some(*order_id),
                memo: None,
                on_hand_after: balance.0,
                held_after: balance.1,
            });
        }
    }
    stock::insert_movements(conn, &movements, now).await?;
    let deltas: Vec<(i64, stock::Levels)> = allocation
        .holds
        .iter()
        .map(|(product_id, quantity)| (*product_id, (0, *quantity)))
        .collect();
    stock::apply_deltas(conn, &deltas).await?;
    Ok(allocation
        .holds
        .iter()
        .map(|(product_id, _)| {
            let (on_hand, held) = running.get(product_id).copied().unwrap_or_default();
            events::stock_changed(*product_id, on_hand, held)
        })
        .collect())
}

/// The placed order as written, built from the plan and the returned ids (no read-back).
fn placed_record(
    order_id: i64,
    request: &OrderRequest,
    plan: &PlannedOrder,
    partner_order_ids: &HashMap<(i64, i64), i64>,
    pay_by: Timestamp,
    now: Timestamp,
) -> OrderRecord {
    let partner_orders = plan
        .partner_orders
        .iter()
        .map(|p| {
            let id = partner_order_ids
                .get(&(order_id, p.partner_id))
                .copied()
                .unwrap_or_default();
            let items = p
                .lines
                .iter()
                .map(|l| OrderItemRecord {
                    product_id: l.product_id,
                    quantity: l.quantity.get(),
                    unit_price: l.unit_price.get(),
                    line_total: l.line_total.get(),
                })
                .collect();
            PartnerOrderRecord::placed(
                id,
                order_id,
                p.partner_id,
                (p.subtotal.get(), p.share),
                items,
            )
        })
        .collect();
    OrderRecord {
        id: order_id,
        user_id: request.user_id,
        status: OrderStatus::PendingPayment,
        total: plan.total.get(),
        coupon_id: plan.coupon_id,
        discount: plan.discount.get(),
        points_used: plan.points.get(),
        payable: plan.payable.get(),
        pay_by,
        paid_at: None,
        delivered_at: None,
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        partner_orders,
    }
}
