//! Order placement, the hot path (DESIGN §3): one transaction per batch, a fixed number of
//! statements whatever the batch size.
//!
//! 1. Lock the batch's stock rows, ascending by product id (no deadlocks between batches),
//!    then the point accounts and user coupons it names (each ascending), and read what
//!    allocation needs: products, existing orders for the batch's idempotency keys, units
//!    already bought under a purchase limit, holdable points, coupons.
//! 2. [`allocate`] decides every request — the same pure function SQLite uses.
//! 3. Write accepted orders with one bulk statement per table (`place_write.rs`), then,
//!    order by order, the points and coupons they hold (few orders use them), then commit.
//!
//! Idempotency keys are guarded by `UNIQUE (user_id, idempotency_key)`, not by the stock
//! locks: two nodes may place the same key for different products at once. The order
//! insert uses `ON CONFLICT DO NOTHING`; if an accepted order was not inserted, the whole
//! batch rolls back with `Conflict("idempotency_race")` and the placement writer retries
//! its requests one by one, where the retry finds the stored order and replays it.

use super::order_reads::load_orders;
use super::place_write::{write_accepted, Accepted};
use super::{benefits, stock};
use crate::domain::allocation::{
    allocate, buyers_of, coupon_ids, point_spenders, product_ids, Allocation, BatchState, Decision,
    ExistingOrder, OrderRequest, ProductState,
};
use crate::domain::{Timestamp, Won};
use crate::store::rows::Columns;
use crate::store::{BatchResult, OrderRecord, PlaceOutcome, StoreError, StoreResult};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
            last_event_id: None,
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
    let (placed, last_event_id) = if accepted.is_empty() {
        (HashMap::new(), None)
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
        last_event_id,
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
            release_at: row.ts("release_at")?,
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
/// limit, less those of partner orders taken back on their own (cancelled by the seller, or
/// returned). Stable for the batch: every order for these products goes through the stock
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
         JOIN partner_orders po ON po.id = oi.partner_order_id \
         WHERE oi.product_id = ANY($1) AND oi.user_id = ANY($2) \
           AND o.status IN ('pending_payment', 'paid', 'confirmed') \
           AND po.status NOT IN ('cancelled', 'refunded') \
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
        for order in load_orders(&mut conn, &replay_ids).await? {
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
