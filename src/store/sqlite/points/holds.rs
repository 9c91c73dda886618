//! Points held for an order, and their release, spending and refund.

use super::lots::{move_account, move_lot, take_from_lots};
use super::{append_ledger, LedgerRow};
use crate::domain::events::{self, NewEvent, PointsChanged};
use crate::domain::points::{HoldStatus, PointsKind};
use crate::domain::Timestamp;
use crate::store::sqlite::{map_err, write_event, SqliteStore, Tx};
use crate::store::{HoldOutcome, PointsHold, StoreError, StoreResult};

fn hold_event(event_type: &'static str, hold: &PointsHold) -> NewEvent {
    events::points_changed(
        event_type,
        &PointsChanged {
            user_id: hold.user_id,
            amount: hold.amount,
            balance: hold.balance,
            held: hold.held,
            order_id: Some(hold.order_id),
            lot_id: None,
            expires_at: None,
            reason: None,
        },
    )
}

/// Holds `amount` for the buyer's order inside `tx`: the hold row (`UNIQUE order_id`), the
/// guarded account, the lots that expire first, one `hold` row per lot.
pub(in crate::store::sqlite) async fn hold_in(
    tx: &mut Tx,
    user_id: i64,
    amount: i64,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<Result<(PointsHold, NewEvent), HoldOutcome>> {
    let inserted = sqlx::query(
        "INSERT INTO point_holds (order_id, user_id, amount, status, created_at, updated_at)
         SELECT o.id, o.user_id, $3, 'held', $4, $4 FROM orders o
         JOIN point_accounts a ON a.user_id = o.user_id
         WHERE o.id = $1 AND o.user_id = $2
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(user_id)
    .bind(amount)
    .bind(now.millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if inserted.rows_affected() == 0 {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM point_holds WHERE order_id = $1)")
                .bind(order_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(map_err)?;
        let mine: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1 AND user_id = $2)",
        )
        .bind(order_id)
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
        return Ok(Err(match (known, mine) {
            (true, _) => HoldOutcome::AlreadyHeld,
            // The buyer's own order, but no account: nothing to hold.
            (false, true) => HoldOutcome::Insufficient,
            (false, false) => HoldOutcome::UnknownOrder,
        }));
    }
    let Some((balance, held)) =
        move_account(tx, user_id, PointsKind::Hold.effect(amount), now).await?
    else {
        return Ok(Err(HoldOutcome::Insufficient));
    };
    let how = (PointsKind::Hold, Some(order_id));
    take_from_lots(tx, user_id, amount, how, (None, None), now).await?;
    let hold = PointsHold {
        order_id,
        user_id,
        amount,
        status: HoldStatus::Held,
        balance,
        held,
    };
    let event = hold_event(events::POINTS_HELD, &hold);
    Ok(Ok((hold, event)))
}

/// Moves the order's hold to `to` (released, spent or refunded) inside `tx`: a conditional
/// write on its status, then the same lots the earlier rows touched, the account, and one
/// row per lot. `None`, changing nothing, when the hold is not in the status `to` needs.
pub(in crate::store::sqlite) async fn step_hold_in(
    tx: &mut Tx,
    order_id: i64,
    to: HoldStatus,
    now: Timestamp,
) -> StoreResult<Option<(PointsHold, NewEvent)>> {
    let Some((from, kind, source_kind)) = to.step() else {
        return Ok(None);
    };
    let stepped: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE point_holds SET status = $3, updated_at = $4
         WHERE order_id = $1 AND status = $2 RETURNING user_id, amount",
    )
    .bind(order_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now.millis())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    let Some((user_id, amount)) = stepped else {
        return Ok(None);
    };
    let (balance, held) = move_account(tx, user_id, kind.effect(amount), now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
    let per_lot: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT lot_id, SUM(amount) FROM point_ledger
         WHERE order_id = $1 AND kind = $2 AND lot_id IS NOT NULL
         GROUP BY lot_id ORDER BY MIN(id)",
    )
    .bind(order_id)
    .bind(source_kind.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    for (lot_id, take) in per_lot {
        move_lot(tx, lot_id, kind.effect(take)).await?;
        let row = LedgerRow {
            user_id,
            kind,
            amount: take,
            lot_id: Some(lot_id),
            order_id: Some(order_id),
            reason: None,
            idempotency_key: None,
        };
        append_ledger(tx, &row, now).await?;
    }
    let hold = PointsHold {
        order_id,
        user_id,
        amount,
        status: to,
        balance,
        held,
    };
    let event_type = match to {
        HoldStatus::Released => events::POINTS_RELEASED,
        HoldStatus::Spent => events::POINTS_SPENT,
        HoldStatus::Held | HoldStatus::Refunded => events::POINTS_REFUNDED,
    };
    let event = hold_event(event_type, &hold);
    Ok(Some((hold, event)))
}

impl SqliteStore {
    pub(super) async fn step_hold(
        &self,
        order_id: i64,
        to: HoldStatus,
        now: Timestamp,
    ) -> StoreResult<Option<PointsHold>> {
        let mut tx = self.write_tx().await?;
        let Some((hold, event)) = step_hold_in(&mut tx, order_id, to, now).await? else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(hold))
    }
}
