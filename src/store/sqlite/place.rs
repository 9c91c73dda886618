//! Order placement on SQLite, the hot path (DESIGN §3).
//!
//! SQLite has one writer, so the batch's `BEGIN IMMEDIATE` is the lock: nothing read here
//! can change before the batch commits. That also makes ids predictable, so the batch
//! assigns them itself and writes each table with ONE statement (`place_write.rs`): a fixed
//! number of round trips to SQLite's worker thread per batch, whatever its size.
//!
//! 1. Read the batch's products and stock, the orders already stored under its
//!    idempotency keys, units already bought under a purchase limit, and the coupons and
//!    holdable points the batch names.
//! 2. [`allocate`] decides every request — the same pure function PostgreSQL uses.
//! 3. Write the accepted orders, their partner orders, items, hold movements and events;
//!    then, order by order, the coupons and points they hold (few orders use them).

use super::benefits;
use super::conn::{json_ids, to_json, SqliteStore, WriteTx};
use super::order_reads::load_order;
use super::place_write::{write_accepted, Levels};
use crate::domain::allocation::{
    allocate, buyers_of, coupon_ids, point_spenders, product_ids, Allocation, BatchState, Decision,
    ExistingOrder, OrderRequest, ProductState,
};
use crate::domain::{Timestamp, Won};
use crate::store::rows::Columns;
use crate::store::{BatchResult, OrderRecord, PlaceOutcome, StoreError, StoreResult};
use std::collections::HashMap;

/// Orders in these states count against a purchase limit (see `OrderStatus::counts_toward_limit`).
const LIMIT_STATUSES: &str = "('pending_payment', 'paid', 'confirmed')";

/// Partner orders in these states, within such an order, were taken back on their own
/// (cancelled by the seller, or returned): their units no longer count.
const TAKEN_BACK_PARTS: &str = "('cancelled', 'refunded')";

pub(super) async fn place_batch(
    store: &SqliteStore,
    batch: &[OrderRequest],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<BatchResult> {
    let mut tx = store.write_tx().await?;
    let (state, levels) = load_state(&mut tx, batch, now).await?;
    let allocation = allocate(batch, &state, now);
    let (placed, last_event_id) =
        write_accepted(&mut tx, batch, &allocation, levels, pay_by, now).await?;
    let outcomes = outcomes(&mut tx, &allocation, placed).await?;
    tx.commit().await?;
    let mut available_after: Vec<(i64, i64)> = allocation.available_after.into_iter().collect();
    available_after.sort_unstable();
    Ok(BatchResult {
        outcomes,
        available_after,
        last_event_id,
    })
}

/// One outcome per request: placed orders from memory, replays read back as they are now.
async fn outcomes(
    tx: &mut WriteTx,
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
    tx: &mut WriteTx,
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
    tx: &mut WriteTx,
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
        let id = row.int("id")?;
        let (on_hand, held) = (row.int("on_hand")?, row.int("held")?);
        let price = Won::new("price", row.int("price")?)
            .map_err(|e| StoreError::Corrupt(format!("product {id}: {e}")))?;
        let product = ProductState {
            partner_id: row.int("partner_id")?,
            price,
            release_at: row.ts("release_at")?,
            max_per_user: row.opt_int("max_per_user")?,
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
    tx: &mut WriteTx,
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
        let key = (row.int("user_id")?, row.text("idempotency_key")?);
        let order = ExistingOrder {
            order_id: row.int("id")?,
            request_hash: row.text("request_hash")?,
        };
        existing.insert(key, order);
    }
    Ok(existing)
}

async fn purchased_units(
    tx: &mut WriteTx,
    batch: &[OrderRequest],
    limited: &[i64],
) -> StoreResult<HashMap<(i64, i64), i64>> {
    let users = buyers_of(batch, limited);
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT oi.user_id, oi.product_id, SUM(oi.quantity) FROM order_items oi
         JOIN orders o ON o.id = oi.order_id
         JOIN partner_orders po ON po.id = oi.partner_order_id
         WHERE oi.product_id IN (SELECT value FROM json_each($1))
           AND oi.user_id IN (SELECT value FROM json_each($2))
           AND o.status IN {LIMIT_STATUSES} AND po.status NOT IN {TAKEN_BACK_PARTS}
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
