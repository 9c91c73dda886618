//! Expiry of the unheld part of lots past their date.

use super::ledger::{append_ledger, LedgerRow};
use super::lots::{move_account, move_lot};
use crate::domain::events::{self, PointsChanged};
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::postgres::outbox;
use crate::store::{ExpiredPoints, StoreError, StoreResult};
use sqlx::postgres::PgPool;

/// Expires the unheld part of the buyer's due lots: `remaining` drops to `held`. The
/// account's row lock comes first, as for every writer of lots.
pub(super) async fn expire(
    pool: &PgPool,
    user_id: i64,
    now: Timestamp,
) -> StoreResult<Option<ExpiredPoints>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM point_accounts WHERE user_id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let due: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, remaining - held FROM point_lots \
         WHERE user_id = $1 AND remaining > 0 AND expires_at <= $2 AND remaining > held \
         ORDER BY id FOR UPDATE",
    )
    .bind(user_id)
    .bind(now.millis())
    .fetch_all(&mut *tx)
    .await?;
    let amount: i64 = due.iter().map(|(_, free)| free).sum();
    if amount == 0 {
        return Ok(None);
    }
    let (balance, held) = move_account(&mut tx, user_id, PointsKind::Expire.effect(amount), now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
    for (lot_id, free) in &due {
        move_lot(&mut tx, *lot_id, PointsKind::Expire.effect(*free)).await?;
        let row = LedgerRow {
            user_id,
            kind: PointsKind::Expire,
            amount: *free,
            lot_id: Some(*lot_id),
            order_id: None,
            reason: None,
            idempotency_key: None,
        };
        append_ledger(&mut tx, &row, now).await?;
    }
    let change = PointsChanged {
        user_id,
        amount,
        balance,
        held,
        order_id: None,
        lot_id: None,
        expires_at: None,
        reason: None,
    };
    let event = events::points_changed(events::POINTS_EXPIRED, &change);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(Some(ExpiredPoints {
        user_id,
        amount,
        lots: due.len(),
        balance,
        held,
    }))
}
