//! Points held for an order, and their release, spending and refund.

use super::ledger::{append_ledger, LedgerRow};
use super::lots::{move_account, move_lot, take_from_lots};
use crate::domain::events::{self, NewEvent, PointsChanged};
use crate::domain::points::{HoldStatus, PointsKind};
use crate::domain::Timestamp;
use crate::store::{sql, PointsHold, StoreError, StoreResult};
use sqlx::postgres::PgConnection;

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

/// Holds `amount` for the buyer's new order inside the placement's transaction: the hold
/// row, the guarded account, the unexpired lots that expire first, one `hold` row per lot.
/// Placement has checked the buyer's holdable points under the same lock, so a refusal here
/// is corruption.
pub(in crate::store::postgres) async fn hold_in(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<NewEvent> {
    sqlx::query(sql::INSERT_POINTS_HOLD)
        .bind(order_id)
        .bind(user_id)
        .bind(amount)
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    let (balance, held) = move_account(conn, user_id, PointsKind::Hold.effect(amount), now)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("points of user {user_id} cannot hold {amount}"))
        })?;
    let how = (PointsKind::Hold, Some(order_id));
    take_from_lots(conn, user_id, amount, how, (None, None), now).await?;
    let hold = PointsHold {
        order_id,
        user_id,
        amount,
        status: HoldStatus::Held,
        balance,
        held,
    };
    Ok(hold_event(events::POINTS_HELD, &hold))
}

/// Moves the order's hold to `to` (released, spent or refunded) inside the caller's
/// transaction: a conditional write on its status, the account, then the same lots the
/// earlier rows touched, one row per lot. `None`, changing nothing, when the hold is not in
/// the status `to` needs.
pub(in crate::store::postgres) async fn step_hold_in(
    conn: &mut PgConnection,
    order_id: i64,
    to: HoldStatus,
    now: Timestamp,
) -> StoreResult<Option<NewEvent>> {
    let Some((from, kind, source_kind)) = to.step() else {
        return Ok(None);
    };
    let stepped: Option<(i64, i64)> = sqlx::query_as(sql::STEP_POINTS_HOLD)
        .bind(order_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(now.millis())
        .fetch_optional(&mut *conn)
        .await?;
    let Some((user_id, _)) = stepped else {
        return Ok(None);
    };
    // What is left to move: a refund leaves out the shares of parts cancelled before.
    let per_lot: Vec<(i64, i64)> = sqlx::query_as(sql::NET_TAKEN_PER_LOT)
        .bind(order_id)
        .bind(source_kind.as_str())
        .bind(kind.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let amount: i64 = per_lot.iter().map(|(_, take)| take).sum();
    let (balance, held) = move_account(conn, user_id, kind.effect(amount), now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
    for (lot_id, take) in per_lot {
        move_lot(conn, lot_id, kind.effect(take)).await?;
        let row = LedgerRow {
            user_id,
            kind,
            amount: take,
            lot_id: Some(lot_id),
            order_id: Some(order_id),
            reason: None,
            idempotency_key: None,
        };
        append_ledger(conn, &row, now).await?;
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
    Ok(Some(hold_event(event_type, &hold)))
}

/// Refunds `share` of the order's spent points when one of its parts is cancelled: the
/// hold stays `spent` and counts what it refunded; the points go back to the lots the order
/// spent from, in the order it spent them, one `refund` row per lot. A hold that is not
/// spent or has less than `share` left to refund is corruption: placement allocated the
/// shares out of the hold's amount.
pub(in crate::store::postgres) async fn refund_share_in(
    conn: &mut PgConnection,
    order_id: i64,
    share: i64,
    now: Timestamp,
) -> StoreResult<NewEvent> {
    let user_id: i64 = sqlx::query_scalar(sql::REFUND_POINTS_SHARE)
        .bind(order_id)
        .bind(share)
        .bind(now.millis())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("points of order {order_id} cannot refund {share}"))
        })?;
    let (balance, held) = move_account(conn, user_id, PointsKind::Refund.effect(share), now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
    let per_lot: Vec<(i64, i64)> = sqlx::query_as(sql::NET_TAKEN_PER_LOT)
        .bind(order_id)
        .bind(PointsKind::Spend.as_str())
        .bind(PointsKind::Refund.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let mut left = share;
    for (lot_id, net) in per_lot {
        let take = net.min(left);
        if take == 0 {
            break;
        }
        left -= take;
        move_lot(conn, lot_id, PointsKind::Refund.effect(take)).await?;
        let row = LedgerRow {
            user_id,
            kind: PointsKind::Refund,
            amount: take,
            lot_id: Some(lot_id),
            order_id: Some(order_id),
            reason: None,
            idempotency_key: None,
        };
        append_ledger(conn, &row, now).await?;
    }
    if left != 0 {
        return Err(StoreError::Corrupt(format!(
            "order {order_id} spent less from its lots than it refunds"
        )));
    }
    let hold = PointsHold {
        order_id,
        user_id,
        amount: share,
        status: HoldStatus::Spent,
        balance,
        held,
    };
    Ok(hold_event(events::POINTS_REFUNDED, &hold))
}
