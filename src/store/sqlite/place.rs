//! Order placement on SQLite, the hot path (DESIGN §3).
//!
//! SQLite has one writer, so the batch's `BEGIN IMMEDIATE` is the lock: nothing read here
//! can change before the batch commits. That also makes ids predictable, so the batch
//! assigns them itself and writes each table with ONE statement (`INSERT … SELECT … FROM
//! json_each($1)` over a JSON array of rows): a fixed number of round trips to SQLite's
//! worker thread per batch, whatever its size.
//!
//! 1. Read the batch's products and stock, the orders already stored under its
//!    idempotency keys, units already bought under a purchase limit, and the coupons and
//!    holdable points the batch names.
//! 2. [`allocate`] decides every request — the same pure function PostgreSQL uses.
//! 3. Write the accepted orders, their partner orders, items, hold movements and events;
//!    then, order by order, the coupons and points they hold (few orders use them).

use super::orders::load_order;
use super::{benefits, json_ids, write_event, SqliteStore, Tx};
use crate::domain::allocation::{
    allocate, buyers_of, coupon_ids, point_spenders, product_ids, Allocation, BatchState, Decision,
    ExistingOrder, OrderRequest, PlannedOrder, ProductState,
};
use crate::domain::events::{self, NewEvent};
use crate::domain::{OrderStatus, Timestamp, Won};
use crate::store::{
    BatchResult, OrderItemRecord, OrderRecord, PartnerOrderRecord, PlaceOutcome, StoreError,
    StoreResult,
};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// Orders in these states count against a purchase limit (see `OrderStatus::counts_toward_limit`).
const LIMIT_STATUSES: &str = "('pending_payment', 'paid', 'confirmed')";

/// `(on_hand, held)` of a stock account as the batch moves it.
type Levels = BTreeMap<i64, (i64, i64)>;

pub(super) async fn place_batch(
    store: &SqliteStore,
    batch: &[OrderRequest],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<BatchResult> {
    let mut tx = store.write_tx().await?;
    let (state, levels) = load_state(&mut tx, batch, now).await?;
    let allocation = allocate(batch, &state, now);
    let placed = write_accepted(&mut tx, batch, &allocation, levels, pay_by, now).await?;
    let outcomes = outcomes(&mut tx, &allocation, placed).await?;
    tx.commit().await?;
    let mut available_after: Vec<(i64, i64)> = allocation.available_after.into_iter().collect();
    available_after.sort_unstable();
    Ok(BatchResult {
        outcomes,
        available_after,
    })
}

/// One outcome per request: placed orders from memory, replays read back as they are now.
async fn outcomes(
    tx: &mut Tx,
    allocation: &Allocation,
    mut placed: HashMap<usize, OrderRecord>,
) -> StoreResult<Vec<PlaceOutcome>> {
    let mut outcomes: Vec<PlaceOutcome> = Vec::with_capacity(allocation.decisions.len());
    for (i, decision) in allocation.decisions.iter().enumerate() {
        let outcome = match decision {
            Decision::Accept(_) => placed.remove(&i).map(PlaceOutcome::Placed),
            Decision::Reject(rejection) => Some(PlaceOutcome::Rejected(rejection.clone())),
            Decision::Replay { order_id } => {
                load_order(tx, *order_id).await?.map(PlaceOutcome::Replayed)
            }
            // `index` is earlier in the batch, so its outcome is already decided.
            Decision::SameAs { index } => match &outcomes[*index] {
                PlaceOutcome::Placed(order) | PlaceOutcome::Replayed(order) => {
                    Some(PlaceOutcome::Replayed(order.clone()))
                }
                rejected => Some(rejected.clone()),
            },
        };
        outcomes.push(outcome.ok_or_else(|| StoreError::Corrupt("order vanished".into()))?);
    }
    Ok(outcomes)
}

async fn load_state(
    tx: &mut Tx,
    batch: &[OrderRequest],
    now: Timestamp,
) -> StoreResult<(BatchState, Levels)> {
    let mut state = BatchState::default();
    let levels = load_products(tx, &product_ids(batch), &mut state).await?;
    state.existing = existing_orders(tx, batch).await?;
    let limited = state.limited_products();
    if !limited.is_empty() {
        state.purchased = purchased_units(tx, batch, &limited).await?;
    }
    state.coupons = benefits::coupons(tx, &coupon_ids(batch)).await?;
    state.points = benefits::spendable_points(tx, &point_spenders(batch), now).await?;
    Ok((state, levels))
}

async fn load_products(
    tx: &mut Tx,
    product_ids: &[i64],
    state: &mut BatchState,
) -> StoreResult<Levels> {
    let rows = sqlx::query(
        "SELECT p.id, p.partner_id, p.price, p.release_at, p.max_per_user, s.on_hand, s.held
         FROM products p JOIN stock s ON s.product_id = p.id
         WHERE p.id IN (SELECT value FROM json_each($1))",
    )
    .bind(json_ids(product_ids.iter().copied()))
    .fetch_all(&mut **tx)
    .await?;
    let mut levels = Levels::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let on_hand: i64 = row.try_get("on_hand")?;
        let held: i64 = row.try_get("held")?;
        let price = Won::new("price", row.try_get("price")?)
            .map_err(|e| StoreError::Corrupt(format!("product {id}: {e}")))?;
        let product = ProductState {
            partner_id: row.try_get("partner_id")?,
            price,
            release_at: Timestamp::from_millis(row.try_get("release_at")?),
            max_per_user: row.try_get("max_per_user")?,
            available: on_hand - held,
        };
        state.products.insert(id, product);
        levels.insert(id, (on_hand, held));
    }
    Ok(levels)
}

/// Orders already stored under the batch's `(user_id, idempotency_key)` pairs; each pair is
/// one lookup in the UNIQUE index.
async fn existing_orders(
    tx: &mut Tx,
    batch: &[OrderRequest],
) -> StoreResult<HashMap<(i64, String), ExistingOrder>> {
    let pairs: Vec<(i64, &str)> = batch
        .iter()
        .map(|r| (r.user_id, r.idempotency_key.as_str()))
        .collect();
    let rows = sqlx::query(
        "SELECT o.id, o.user_id, o.idempotency_key, o.request_hash
         FROM json_each($1) k
         JOIN orders o ON o.user_id = k.value ->> 0 AND o.idempotency_key = k.value ->> 1",
    )
    .bind(to_json(&pairs))
    .fetch_all(&mut **tx)
    .await?;
    let mut existing = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = (row.try_get("user_id")?, row.try_get("idempotency_key")?);
        let order = ExistingOrder {
            order_id: row.try_get("id")?,
            request_hash: row.try_get("request_hash")?,
        };
        existing.insert(key, order);
    }
    Ok(existing)
}

async fn purchased_units(
    tx: &mut Tx,
    batch: &[OrderRequest],
    limited: &[i64],
) -> StoreResult<HashMap<(i64, i64), i64>> {
    let users = buyers_of(batch, limited);
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT oi.user_id, oi.product_id, SUM(oi.quantity) FROM order_items oi
         JOIN orders o ON o.id = oi.order_id
         WHERE oi.product_id IN (SELECT value FROM json_each($1))
           AND oi.user_id IN (SELECT value FROM json_each($2))
           AND o.status IN {LIMIT_STATUSES}
         GROUP BY oi.user_id, oi.product_id"
    ))
    .bind(json_ids(limited.iter().copied()))
    .bind(json_ids(users))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(u, p, units)| ((u, p), units))
        .collect())
}

fn to_json<T: Serialize>(rows: &T) -> String {
    // Vectors of numbers and strings always serialise.
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
}

/// The next free id of each table the batch writes. Safe to hand out in advance: the batch
/// holds SQLite's only write lock from its first read to its commit.
struct NextIds {
    order: i64,
    partner_order: i64,
    item: i64,
    movement: i64,
    event: i64,
}

impl NextIds {
    async fn read(tx: &mut Tx) -> StoreResult<NextIds> {
        let (order, partner_order, item, movement, event): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM orders),
                        (SELECT COALESCE(MAX(id), 0) FROM partner_orders),
                        (SELECT COALESCE(MAX(id), 0) FROM order_items),
                        (SELECT COALESCE(MAX(id), 0) FROM stock_movements),
                        (SELECT COALESCE(MAX(id), 0) FROM outbox)",
            )
            .fetch_one(&mut **tx)
            .await?;
        Ok(NextIds {
            order: order + 1,
            partner_order: partner_order + 1,
            item: item + 1,
            movement: movement + 1,
            event: event + 1,
        })
    }
}

fn take(next: &mut i64) -> i64 {
    let id = *next;
    *next += 1;
    id
}

/// id, user_id, idempotency_key, request_hash, total, coupon_id, discount, points_used,
/// payable
type OrderRow<'a> = (i64, i64, &'a str, &'a str, i64, Option<i64>, i64, i64, i64);

/// Everything one batch writes, row by row, as JSON-serialisable tuples.
#[derive(Default)]
struct BatchRows<'a> {
    orders: Vec<OrderRow<'a>>,
    /// id, order_id, partner_id, subtotal
    partner_orders: Vec<[i64; 4]>,
    /// id, order_id, partner_order_id, user_id, product_id, quantity, unit_price, line_total
    items: Vec<[i64; 8]>,
    /// id, product_id, quantity, order_id, on_hand_after, held_after
    holds: Vec<[i64; 6]>,
    /// id, aggregate_type, aggregate_id, event_type, payload
    events: Vec<(i64, &'static str, i64, &'static str, String)>,
}

impl<'a> BatchRows<'a> {
    fn event(&mut self, ids: &mut NextIds, event: NewEvent) {
        let id = take(&mut ids.event);
        let NewEvent {
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
        } = event;
        self.events
            .push((id, aggregate_type, aggregate_id, event_type, payload));
    }

    /// Adds one accepted order's rows and returns the order as the client will see it.
    fn add_order(
        &mut self,
        ids: &mut NextIds,
        request: &'a OrderRequest,
        plan: &PlannedOrder,
        levels: &mut Levels,
        pay_by: Timestamp,
        now: Timestamp,
    ) -> OrderRecord {
        let order_id = take(&mut ids.order);
        let (user_id, total) = (request.user_id, plan.total.get());
        let (key, hash) = (
            request.idempotency_key.as_str(),
            request.request_hash.as_str(),
        );
        let (discount, points_used, payable) =
            (plan.discount.get(), plan.points.get(), plan.payable.get());
        self.orders.push((
            order_id,
            user_id,
            key,
            hash,
            total,
            plan.coupon_id,
            discount,
            points_used,
            payable,
        ));
        let mut partner_orders = Vec::with_capacity(plan.partner_orders.len());
        for planned in &plan.partner_orders {
            let partner_order_id = take(&mut ids.partner_order);
            let subtotal = planned.subtotal.get();
            self.partner_orders
                .push([partner_order_id, order_id, planned.partner_id, subtotal]);
            let mut items = Vec::with_capacity(planned.lines.len());
            for line in &planned.lines {
                let item = OrderItemRecord {
                    product_id: line.product_id,
                    quantity: line.quantity.get(),
                    unit_price: line.unit_price.get(),
                    line_total: line.line_total.get(),
                };
                self.items.push([
                    take(&mut ids.item),
                    order_id,
                    partner_order_id,
                    user_id,
                    item.product_id,
                    item.quantity,
                    item.unit_price,
                    item.line_total,
                ]);
                let level = levels.entry(item.product_id).or_default();
                level.1 += item.quantity;
                let movement_id = take(&mut ids.movement);
                let (product_id, quantity) = (item.product_id, item.quantity);
                self.holds.push([
                    movement_id,
                    product_id,
                    quantity,
                    order_id,
                    level.0,
                    level.1,
                ]);
                items.push(item);
            }
            partner_orders.push(PartnerOrderRecord {
                id: partner_order_id,
                partner_id: planned.partner_id,
                status: OrderStatus::PendingPayment.as_str().to_owned(),
                subtotal,
                items,
            });
        }
        self.event(ids, events::order_placed(order_id, user_id, now));
        OrderRecord {
            id: order_id,
            user_id,
            status: OrderStatus::PendingPayment,
            total,
            coupon_id: plan.coupon_id,
            discount,
            points_used,
            payable,
            pay_by,
            paid_at: None,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
            partner_orders,
        }
    }
}

/// Writes the accepted orders of the batch; returns them by request index.
async fn write_accepted(
    tx: &mut Tx,
    batch: &[OrderRequest],
    allocation: &Allocation,
    mut levels: Levels,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<HashMap<usize, OrderRecord>> {
    let mut placed = HashMap::new();
    if allocation.holds.is_empty() {
        return Ok(placed);
    }
    let mut ids = NextIds::read(tx).await?;
    let mut rows = BatchRows::default();
    for (i, decision) in allocation.decisions.iter().enumerate() {
        if let Decision::Accept(plan) = decision {
            let order = rows.add_order(&mut ids, &batch[i], plan, &mut levels, pay_by, now);
            placed.insert(i, order);
        }
    }
    for (product_id, _) in &allocation.holds {
        let (on_hand, held) = levels.get(product_id).copied().unwrap_or_default();
        rows.event(&mut ids, events::stock_changed(*product_id, on_hand, held));
    }
    insert_rows(tx, &rows, pay_by, now).await?;
    for (product_id, units) in &allocation.holds {
        // The CHECK (held <= on_hand) is the last line of defence against overselling.
        sqlx::query("UPDATE stock SET held = held + $2 WHERE product_id = $1")
            .bind(product_id)
            .bind(units)
            .execute(&mut **tx)
            .await?;
    }
    let mut holders: Vec<&OrderRecord> = placed
        .values()
        .filter(|o| o.coupon_id.is_some() || o.points_used > 0)
        .collect();
    holders.sort_unstable_by_key(|o| o.id);
    for order in holders {
        for event in benefits::hold(tx, order, now).await? {
            write_event(tx, &event, now.millis()).await?;
        }
    }
    Ok(placed)
}

/// One statement per table, parents before children (foreign keys are enforced).
async fn insert_rows(
    tx: &mut Tx,
    rows: &BatchRows<'_>,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    let now = now.millis();
    let statements: [(&str, String, Option<i64>); 5] = [
        (
            "INSERT INTO orders (id, user_id, idempotency_key, request_hash, status, total,
                 coupon_id, discount, points_used, payable, pay_by, created_at, updated_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'pending_payment',
                 value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, $3, $2, $2
             FROM json_each($1)",
            to_json(&rows.orders),
            Some(pay_by.millis()),
        ),
        (
            "INSERT INTO partner_orders (id, order_id, partner_id, status, subtotal)
             SELECT value ->> 0, value ->> 1, value ->> 2, 'pending_payment', value ->> 3
             FROM json_each($1)",
            to_json(&rows.partner_orders),
            None,
        ),
        (
            "INSERT INTO order_items (id, order_id, partner_order_id, user_id, product_id,
                 quantity, unit_price, line_total)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                 value ->> 5, value ->> 6, value ->> 7
             FROM json_each($1)",
            to_json(&rows.items),
            None,
        ),
        (
            "INSERT INTO stock_movements (id, product_id, kind, quantity, order_id, memo,
                 on_hand_after, held_after, created_at)
             SELECT value ->> 0, value ->> 1, 'hold', value ->> 2, value ->> 3, NULL,
                 value ->> 4, value ->> 5, $2
             FROM json_each($1)",
            to_json(&rows.holds),
            None,
        ),
        (
            "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2
             FROM json_each($1)",
            to_json(&rows.events),
            None,
        ),
    ];
    for (sql, json, extra) in statements {
        let mut query = sqlx::query(sql).bind(json).bind(now);
        if let Some(extra) = extra {
            query = query.bind(extra);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
