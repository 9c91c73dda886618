//! Where stock is held, committed, released and returned on SQLite: the stock accounts and
//! their ledger (DESIGN §1). Every balance change here comes with its ledger row in the
//! same transaction; the CHECKs (`0 <= held <= on_hand`) refuse anything that would
//! oversell or go negative. SQLite's single writer serialises these writes, so no row
//! locks are needed.

use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::{StockLevels, StoreError, StoreResult};
use sqlx::SqliteConnection;

/// Applies one movement to a stock account and appends its ledger row; `NotFound` when
/// the product has no account.
pub(super) async fn move_stock(
    conn: &mut SqliteConnection,
    product_id: i64,
    (kind, quantity): (MovementKind, i64),
    (order_id, memo): (Option<i64>, Option<&str>),
    now: Timestamp,
) -> StoreResult<StockLevels> {
    let (d_on_hand, d_held) = kind.effect(quantity);
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE stock SET on_hand = on_hand + $2, held = held + $3
         WHERE product_id = $1 RETURNING on_hand, held",
    )
    .bind(product_id)
    .bind(d_on_hand)
    .bind(d_held)
    .fetch_optional(&mut *conn)
    .await?;
    let (on_hand, held) = row.ok_or(StoreError::NotFound)?;
    let levels = StockLevels {
        product_id,
        on_hand,
        held,
    };
    insert_movement(conn, &levels, (kind, quantity), (order_id, memo), now).await?;
    Ok(levels)
}

/// Appends one ledger row; `levels` are the account's balances once it applied.
pub(super) async fn insert_movement(
    conn: &mut SqliteConnection,
    levels: &StockLevels,
    (kind, quantity): (MovementKind, i64),
    (order_id, memo): (Option<i64>, Option<&str>),
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO stock_movements
             (product_id, kind, quantity, order_id, memo, on_hand_after, held_after, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(levels.product_id)
    .bind(kind.as_str())
    .bind(quantity)
    .bind(order_id)
    .bind(memo)
    .bind(levels.on_hand)
    .bind(levels.held)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves one order's units (`(product_id, quantity)`, ascending by product) with `kind`,
/// one ledger row per product, and returns the `stock.changed` events to append.
pub(super) async fn move_order_units(
    conn: &mut SqliteConnection,
    order_id: i64,
    kind: MovementKind,
    units: &[(i64, i64)],
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let mut changed = Vec::with_capacity(units.len());
    for &(product_id, quantity) in units {
        let how = (kind, quantity);
        let levels = move_stock(conn, product_id, how, (Some(order_id), None), now).await?;
        changed.push(events::stock_changed(
            product_id,
            levels.on_hand,
            levels.held,
        ));
    }
    Ok(changed)
}
