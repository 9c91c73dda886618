//! Where stock is held, committed, released and returned on PostgreSQL: the stock accounts
//! and their ledger (DESIGN §1), written by placement, order transitions and the catalogue.
//! Every balance change here comes with its ledger row in the same transaction; accounts
//! are locked in ascending product id, the one lock order every writer uses.

use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::{StoreError, StoreResult};
use sqlx::postgres::PgConnection;
use sqlx::Row;
use std::collections::BTreeMap;

/// One ledger row about to be written; `*_after` are the balances once it applied.
#[derive(Debug, Clone)]
pub(super) struct Movement<'a> {
    pub product_id: i64,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub memo: Option<&'a str>,
    pub on_hand_after: i64,
    pub held_after: i64,
}

/// `(on_hand, held)` of a stock account.
pub(super) type Levels = (i64, i64);

/// Appends ledger rows in the given order, in one statement.
pub(super) async fn insert_movements(
    conn: &mut PgConnection,
    rows: &[Movement<'_>],
    now: Timestamp,
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let product_ids: Vec<i64> = rows.iter().map(|m| m.product_id).collect();
    let kinds: Vec<&str> = rows.iter().map(|m| m.kind.as_str()).collect();
    let quantities: Vec<i64> = rows.iter().map(|m| m.quantity).collect();
    let order_ids: Vec<Option<i64>> = rows.iter().map(|m| m.order_id).collect();
    let memos: Vec<Option<&str>> = rows.iter().map(|m| m.memo).collect();
    let on_hand: Vec<i64> = rows.iter().map(|m| m.on_hand_after).collect();
    let held: Vec<i64> = rows.iter().map(|m| m.held_after).collect();
    sqlx::query(
        "INSERT INTO stock_movements (product_id, kind, quantity, order_id, memo, \
         on_hand_after, held_after, created_at) \
         SELECT m.product_id, m.kind, m.quantity, m.order_id, m.memo, m.on_hand_after, \
                m.held_after, $8 \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
                     $6::bigint[], $7::bigint[]) \
              WITH ORDINALITY AS m(product_id, kind, quantity, order_id, memo, on_hand_after, \
                                   held_after, ord) \
         ORDER BY m.ord",
    )
    .bind(&product_ids)
    .bind(&kinds)
    .bind(&quantities)
    .bind(&order_ids)
    .bind(&memos)
    .bind(&on_hand)
    .bind(&held)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the accounts of `product_ids` in ascending id order — the one lock order every
/// writer uses, so two transactions can never wait on each other in a cycle.
pub(super) async fn lock_levels(
    conn: &mut PgConnection,
    product_ids: &[i64],
) -> StoreResult<BTreeMap<i64, Levels>> {
    let rows = sqlx::query(
        "SELECT product_id, on_hand, held FROM stock WHERE product_id = ANY($1) \
         ORDER BY product_id FOR UPDATE",
    )
    .bind(product_ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let levels = (row.try_get("on_hand")?, row.try_get("held")?);
            Ok((row.try_get("product_id")?, levels))
        })
        .collect()
}

/// Adds `(Δon_hand, Δheld)` to each account, one row per product, in one statement. The
/// rows are already locked by the caller; the table's CHECKs refuse a negative or
/// over-held balance even if a bug got past the allocation.
pub(super) async fn apply_deltas(
    conn: &mut PgConnection,
    deltas: &[(i64, Levels)],
) -> StoreResult<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = deltas.iter().map(|(id, _)| *id).collect();
    let on_hand: Vec<i64> = deltas.iter().map(|(_, d)| d.0).collect();
    let held: Vec<i64> = deltas.iter().map(|(_, d)| d.1).collect();
    let done = sqlx::query(
        "UPDATE stock s SET on_hand = s.on_hand + d.on_hand, held = s.held + d.held \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS d(product_id, on_hand, held) \
         WHERE s.product_id = d.product_id",
    )
    .bind(&ids)
    .bind(&on_hand)
    .bind(&held)
    .execute(conn)
    .await?;
    if done.rows_affected() != deltas.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "stock update touched {} of {} accounts",
            done.rows_affected(),
            deltas.len()
        )));
    }
    Ok(())
}

/// Moves one order's units (`(product_id, quantity)`, ascending by product) with `kind`:
/// locks the accounts, writes one ledger row per product, updates the balances, and returns
/// the `stock.changed` events to append.
pub(super) async fn move_order_units(
    conn: &mut PgConnection,
    order_id: i64,
    kind: MovementKind,
    units: &[(i64, i64)],
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let ids: Vec<i64> = units.iter().map(|(id, _)| *id).collect();
    let levels = lock_levels(conn, &ids).await?;
    let mut movements = Vec::with_capacity(units.len());
    let mut deltas = Vec::with_capacity(units.len());
    let mut changed = Vec::with_capacity(units.len());
    for &(product_id, quantity) in units {
        let (on_hand, held) = *levels
            .get(&product_id)
            .ok_or_else(|| StoreError::Corrupt(format!("no stock account for {product_id}")))?;
        let delta = kind.effect(quantity);
        let after = (on_hand + delta.0, held + delta.1);
        debug_assert!(
            after.1 >= 0 && after.1 <= after.0,
            "stock balance out of range"
        );
        movements.push(Movement {
            product_id,
            kind,
            quantity,
            order_id: Some(order_id),
            memo: None,
            on_hand_after: after.0,
            held_after: after.1,
        });
        deltas.push((product_id, delta));
        changed.push(events::stock_changed(product_id, after.0, after.1));
    }
    insert_movements(conn, &movements, now).await?;
    apply_deltas(conn, &deltas).await?;
    Ok(changed)
}
