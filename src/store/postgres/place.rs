//! Order placement, the hot path (DESIGN §3): one transaction per batch, a fixed number of
//! statements whatever the batch size.
//!
//! 1. Lock the batch's stock rows, ascending by product id (no deadlocks between batches),
//!    then the point accounts and user coupons it names (each ascending), and read what
//!    allocation needs: products, existing orders for the batch's idempotency keys, units
//!    already bought under a purchase limit, holdable points, coupons.
//! 2. [`allocate`] decides every request — the same pure function SQLite uses.
//! 3. Write accepted orders with one bulk statement per table, then, order by order, the
//!    points and coupons they hold (few orders use them), then commit.
//!
//! Idempotency keys are guarded by `UNIQUE (user_id, idempotency_key)`, not by the stock
//! locks: two nodes may place the same key for different products at once. The order
//! insert uses `ON CONFLICT DO NOTHING`; if an accepted order was not inserted, the whole
//! batch rolls back with `Conflict("idempotency_race")` and the placement writer retries
//! its requests one by one, where the retry finds the stored order and replays it.

use super::{benefits, orders, outbox, stock};
use crate::domain::allocation::{
    allocate, buyers_of, coupon_ids, point_spenders, product_ids, Allocation, BatchState, Decision,
    ExistingOrder, OrderRequest, PlannedOrder, ProductState,
};
use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::{OrderStatus, Timestamp, Won};
use crate::store::{
    BatchResult, OrderItemRecord, OrderRecord, PartnerOrderRecord, PlaceOutcome, StoreError,
    StoreResult,
};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// SQLSTATE of `deadlock_detected`.
const DEADLOCK_DETECTED: &str = "40P01";

/// The error that sends the placement writer to its one-by-one retry.
const IDEMPOTENCY_RACE: StoreError = StoreError::Conflict("idempotency_race");

/// An accepted request: its index in the batch and its plan.
type Accepted<'a> = (usize, &'a PlannedOrder);

pub(super) async fn place_batch(
    pool: &PgPool,
    batch: &[OrderRequest],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<BatchResult> {
    if batch.is_empty() {
        return Ok(BatchResult {
            outcomes: Vec::new(),
            available_after: Vec::new(),
        });
    }
    let mut tx = pool.begin().await?;
    let (state, levels) = load_state(&mut tx, batch, now).await?;
    let allocation = allocate(batch, &state, now);
    let accepted: Vec<Accepted> = allocation
        .decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Decision::Accept(plan) => Some((i, plan)),
            _ => None,
        })
        .collect();
    let placed = if accepted.is_empty() {
        HashMap::new()
    } else {
        write_accepted(&mut tx, batch, &accepted, &allocation, &levels, pay_by, now).await?
    };
    tx.commit().await?;
    let outcomes = outcomes(pool, &allocation, placed).await?;
    let mut available_after: Vec<(i64, i64)> = allocation.available_after.into_iter().collect();
    available_after.sort_unstable();
    Ok(BatchResult {
        outcomes,
        available_after,
    })
}

/// Locks and reads everything allocation depends on. Reads run after the lock in READ
/// COMMITTED, so each sees every batch that held these rows before us.
async fn load_state(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    now: Timestamp,
) -> StoreResult<(BatchState, BTreeMap<i64, stock::Levels>)> {
    let mut state = BatchState::default();
    let levels = lock_products(conn, &product_ids(batch), &mut state).await?;
    state.points = benefits::lock_spendable_points(conn, &point_spenders(batch), now).await?;
    state.coupons = benefits::lock_coupons(conn, &coupon_ids(batch)).await?;
    state.existing = existing_orders(conn, batch).await?;
    let limited = state.limited_products();
    if !limited.is_empty() {
        state.purchased = purchased_units(conn, batch, &limited).await?;
    }
    Ok((state, levels))
}

/// Locks the stock rows in ascending product id order (the sort happens below the lock, so
/// rows are locked in that order) and reads the catalogue facts beside them.
async fn lock_products(
    conn: &mut PgConnection,
    product_ids: &[i64],
    state: &mut BatchState,
) -> StoreResult<BTreeMap<i64, stock::Levels>> {
    let rows = sqlx::query(
        "SELECT s.product_id, s.on_hand, s.held, p.partner_id, p.price, p.release_at, \
                p.max_per_user \
         FROM stock s JOIN products p ON p.id = s.product_id \
         WHERE s.product_id = ANY($1) ORDER BY s.product_id FOR UPDATE OF s",
    )
    .bind(product_ids)
    .fetch_all(conn)
    .await?;
    let mut levels = BTreeMap::new();
    for row in &rows {
        let id: i64 = row.try_get("product_id")?;
        let on_hand: i64 = row.try_get("on_hand")?;
        let held: i64 = row.try_get("held")?;
        let price = Won::new("price", row.try_get("price")?)
            .map_err(|e| StoreError::Corrupt(format!("product {id}: {e}")))?;
        let product = ProductState {
            partner_id: row.try_get("partner_id")?,
            price,
            release_at: super::ts(row, "release_at")?,
            max_per_user: row.try_get("max_per_user")?,
            available: on_hand - held,
        };
        state.products.insert(id, product);
        levels.insert(id, (on_hand, held));
    }
    Ok(levels)
}

/// Orders already stored under the batch's `(user_id, idempotency_key)` pairs, in one
/// statement over two parallel arrays.
async fn existing_orders(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
) -> StoreResult<HashMap<(i64, String), ExistingOrder>> {
    let pairs: BTreeSet<(i64, &str)> = batch
        .iter()
        .map(|r| (r.user_id, r.idempotency_key.as_str()))
        .collect();
    let (users, keys): (Vec<i64>, Vec<&str>) = pairs.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT o.id, o.user_id, o.idempotency_key, o.request_hash \
         FROM UNNEST($1::bigint[], $2::text[]) AS k(user_id, idempotency_key) \
         JOIN orders o ON o.user_id = k.user_id AND o.idempotency_key = k.idempotency_key",
    )
    .bind(&users)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    let mut existing = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = (row.try_get("user_id")?, row.try_get("idempotency_key")?);
        let order = ExistingOrder {
            order_id: row.try_get("id")?,
            request_hash: row.try_get("request_hash")?,
        };
        existing.insert(key, order);
    }
    Ok(existing)
}

/// Units each batch user already has, per limited product, in orders that count toward the
/// limit. Stable for the batch: every order for these products goes through the stock
/// locks we hold, and a cancel only lowers the count.
async fn purchased_units(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    limited: &[i64],
) -> StoreResult<HashMap<(i64, i64), i64>> {
    let users = buyers_of(batch, limited);
    let rows = sqlx::query(
        "SELECT oi.user_id, oi.product_id, SUM(oi.quantity)::BIGINT AS units \
         FROM order_items oi JOIN orders o ON o.id = oi.order_id \
         WHERE oi.product_id = ANY($1) AND oi.user_id = ANY($2) \
           AND o.status IN ('pending_payment', 'paid', 'confirmed') \
         GROUP BY oi.user_id, oi.product_id",
    )
    .bind(limited)
    .bind(&users)
    .fetch_all(conn)
    .await?;
    let mut purchased = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = (row.try_get("user_id")?, row.try_get("product_id")?);
        purchased.insert(key, row.try_get("units")?);
    }
    Ok(purchased)
}

/// Writes every accepted order and its holds; returns the placed records by request index.
async fn write_accepted(
    conn: &mut PgConnection,
    batch: &[OrderRequest],
    accepted: &[Accepted<'_>],
    allocation: &Allocation,
    levels: &BTreeMap<i64, stock::Levels>,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<HashMap<usize, OrderRecord>> {
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
    outbox::append(conn, &outgoing, now).await?;
    Ok(records.into_iter().collect())
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
    let totals = money(|p| p.total.get());
    let discounts = money(|p| p.discount.get());
    let points = money(|p| p.points.get());
    let payables = money(|p| p.payable.get());
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
    .bind(&totals)
    .bind(&coupons)
    .bind(&discounts)
    .bind(&points)
    .bind(&payables)
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
    let mut ids: HashMap<(i64, String), i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = (row.try_get("user_id")?, row.try_get("idempotency_key")?);
        ids.insert(key, row.try_get("id")?);
    }
    users
        .iter()
        .zip(&keys)
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
    for ((_, plan), order_id) in accepted.iter().zip(order_ids) {
        for partner_order in &plan.partner_orders {
            orders.push(*order_id);
            partners.push(partner_order.partner_id);
            subtotals.push(partner_order.subtotal.get());
        }
    }
    let rows = sqlx::query(
        "INSERT INTO partner_orders (order_id, partner_id, status, subtotal) \
         SELECT p.order_id, p.partner_id, 'pending_payment', p.subtotal \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) \
              WITH ORDINALITY AS p(order_id, partner_id, subtotal, ord) \
         ORDER BY p.ord \
         RETURNING id, order_id, partner_id",
    )
    .bind(&orders)
    .bind(&partners)
    .bind(&subtotals)
    .fetch_all(conn)
    .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in &rows {
        ids.insert(
            (row.try_get("order_id")?, row.try_get("partner_id")?),
            row.try_get("id")?,
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
        .map(|p| PartnerOrderRecord {
            id: partner_order_ids
                .get(&(order_id, p.partner_id))
                .copied()
                .unwrap_or_default(),
            partner_id: p.partner_id,
            status: OrderStatus::PendingPayment.as_str().to_owned(),
            subtotal: p.subtotal.get(),
            items: p
                .lines
                .iter()
                .map(|l| OrderItemRecord {
                    product_id: l.product_id,
                    quantity: l.quantity.get(),
                    unit_price: l.unit_price.get(),
                    line_total: l.line_total.get(),
                })
                .collect(),
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
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        partner_orders,
    }
}

/// One outcome per request, in order. Replays are read after commit, as stored then;
/// `SameAs` repeats the answer of the request it names (a placed order as `Replayed`).
async fn outcomes(
    pool: &PgPool,
    allocation: &Allocation,
    mut placed: HashMap<usize, OrderRecord>,
) -> StoreResult<Vec<PlaceOutcome>> {
    let replay_ids: Vec<i64> = allocation
        .decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Replay { order_id } => Some(*order_id),
            _ => None,
        })
        .collect();
    let mut replayed: HashMap<i64, OrderRecord> = HashMap::new();
    if !replay_ids.is_empty() {
        let mut conn = pool.acquire().await?;
        for order in orders::load_orders(&mut conn, &replay_ids).await? {
            replayed.insert(order.id, order);
        }
    }
    let mut outcomes: Vec<PlaceOutcome> = Vec::with_capacity(allocation.decisions.len());
    for (i, decision) in allocation.decisions.iter().enumerate() {
        let outcome = match decision {
            Decision::Accept(_) => PlaceOutcome::Placed(
                placed
                    .remove(&i)
                    .ok_or_else(|| StoreError::Corrupt(format!("request {i} not written")))?,
            ),
            Decision::Replay { order_id } => PlaceOutcome::Replayed(
                replayed
                    .get(order_id)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished")))?,
            ),
            Decision::SameAs { index } => match outcomes.get(*index) {
                Some(PlaceOutcome::Placed(order) | PlaceOutcome::Replayed(order)) => {
                    PlaceOutcome::Replayed(order.clone())
                }
                Some(PlaceOutcome::Rejected(rejection)) => {
                    PlaceOutcome::Rejected(rejection.clone())
                }
                None => return Err(StoreError::Corrupt(format!("request {i} refers ahead"))),
            },
            Decision::Reject(rejection) => PlaceOutcome::Rejected(rejection.clone()),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
