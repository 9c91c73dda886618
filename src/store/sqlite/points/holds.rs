//! Points held for an order, and their release, spending and refund.

use super::ledger::{append_ledger, LedgerRow};
use super::lots::{move_account, move_lot};
use crate::domain::events::{self, NewEvent, PointsChanged};
use crate::domain::points::{take_soonest_expiring, HoldStatus, LotFree, PointsKind};
use crate::domain::Timestamp;
use crate::store::sqlite::conn::{json_ids, to_json};
use crate::store::{sql, PointsHold, StoreError, StoreResult};
use sqlx::SqliteConnection;
use std::collections::{BTreeMap, HashMap};

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

/// Holds the points of a placement batch's new orders, `(order_id, user_id, amount)`
/// ascending by order, inside its transaction, in a fixed handful of statements whatever
/// the batch's size: the hold rows; each buyer's account moved once by their total under
/// the guard `balance - held >= 0`; their unexpired lots read once and taken order by order
/// in memory, soonest-expiring first, then moved once each; one `hold` ledger row per order
/// and lot, in order. Each order's `points.held` event carries the account as that order
/// left it. Placement has checked the buyers' holdable points under the same lock, so a
/// refusal here is corruption.
pub(in crate::store::sqlite) async fn hold_all_in(
    conn: &mut SqliteConnection,
    holds: &[(i64, i64, i64)],
    now: Timestamp,
) -> StoreResult<Vec<(i64, NewEvent)>> {
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(sql::INSERT_POINTS_HOLDS)
        .bind(to_json(&holds))
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
    for &(_, user_id, amount) in holds {
        *totals.entry(user_id).or_default() += amount;
    }
    let moved: Vec<(i64, i64, i64)> = sqlx::query_as(sql::HOLD_ON_ACCOUNTS)
        .bind(to_json(&totals.iter().collect::<Vec<_>>()))
        .bind(now.millis())
        .fetch_all(&mut *conn)
        .await?;
    if moved.len() != totals.len() {
        return Err(StoreError::Corrupt(format!(
            "{} of {} points accounts could hold their orders' points",
            moved.len(),
            totals.len()
        )));
    }
    // Each account as it was before the batch, then moved order by order.
    let mut accounts: HashMap<i64, (i64, i64)> = moved
        .into_iter()
        .map(|(user_id, balance, held)| (user_id, (balance, held - totals[&user_id])))
        .collect();
    let mut lots = holdable_lots(conn, totals.keys().copied(), now).await?;
    let mut lot_moves: BTreeMap<i64, i64> = BTreeMap::new();
    let mut ledger: Vec<(i64, i64, i64, i64)> = Vec::new();
    let mut held_events = Vec::with_capacity(holds.len());
    for &(order_id, user_id, amount) in holds {
        let free = lots.entry(user_id).or_default();
        let taken = take_soonest_expiring(free, amount).ok_or_else(|| {
            StoreError::Corrupt(format!("lots of user {user_id} hold less than its account"))
        })?;
        for (lot_id, take) in taken {
            if let Some(lot) = free.iter_mut().find(|l| l.lot_id == lot_id) {
                lot.free -= take;
            }
            *lot_moves.entry(lot_id).or_default() += take;
            ledger.push((user_id, take, lot_id, order_id));
        }
        let (balance, held) = accounts
            .get_mut(&user_id)
            .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
        *held += amount;
        let hold = PointsHold {
            order_id,
            user_id,
            amount,
            status: HoldStatus::Held,
            balance: *balance,
            held: *held,
        };
        held_events.push((order_id, hold_event(events::POINTS_HELD, &hold)));
    }
    let lot_moves: Vec<(i64, i64)> = lot_moves.into_iter().collect();
    let done = sqlx::query(sql::HOLD_ON_LOTS)
        .bind(to_json(&lot_moves))
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != lot_moves.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} of {} point lots moved",
            done.rows_affected(),
            lot_moves.len()
        )));
    }
    sqlx::query(sql::APPEND_HOLD_LEDGER)
        .bind(to_json(&ledger))
        .bind(PointsKind::Hold.as_str())
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    Ok(held_events)
}

/// The unexpired lots with points free to hold of each of `users`.
async fn holdable_lots(
    conn: &mut SqliteConnection,
    users: impl IntoIterator<Item = i64>,
    now: Timestamp,
) -> StoreResult<HashMap<i64, Vec<LotFree>>> {
    let rows: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(sql::FREE_LOTS_OF_USERS)
        .bind(json_ids(users))
        .fetch_all(&mut *conn)
        .await?;
    let mut lots: HashMap<i64, Vec<LotFree>> = HashMap::new();
    for (user_id, lot_id, free, expires_at) in rows {
        let lot = LotFree {
            lot_id,
            free,
            expires_at: expires_at.map(Timestamp::from_millis),
        };
        if lot.holdable_at(now) {
            lots.entry(user_id).or_default().push(lot);
        }
    }
    Ok(lots)
}

/// Moves the order's hold to `to` (released, spent or refunded) inside the caller's
/// transaction: a conditional write on its status, the account, then the same lots the
/// earlier rows touched, one row per lot. `None`, changing nothing, when the hold is not in
/// the status `to` needs.
pub(in crate::store::sqlite) async fn step_hold_in(
    conn: &mut SqliteConnection,
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
pub(in crate::store::sqlite) async fn refund_share_in(
    conn: &mut SqliteConnection,
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
