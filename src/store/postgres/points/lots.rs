//! The buyer's account and lots: crediting, moving, taking from lots soonest-expiring
//! first, earning points for a confirmed order, and taking back a returned part's share.

use super::ledger::{append_ledger, LedgerRow};
use crate::domain::events::{self, NewEvent, PointsChanged};
use crate::domain::points::{earned_share_taken_back, take_soonest_expiring, LotFree, PointsKind};
use crate::domain::Timestamp;
use crate::store::postgres::outbox;
use crate::store::{sql, EarnOutcome, Earning, StoreError, StoreResult};
use sqlx::postgres::{PgConnection, PgPool};

/// Adds `amount` (> 0) to the buyer's balance, opening the account if needed; takes the
/// account's row lock.
pub(super) async fn credit_account(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    now: Timestamp,
) -> StoreResult<(i64, i64)> {
    debug_assert!(amount > 0, "a credit is positive");
    Ok(sqlx::query_as(sql::CREDIT_POINTS)
        .bind(user_id)
        .bind(amount)
        .bind(now.millis())
        .fetch_one(conn)
        .await?)
}

/// Applies `(Δbalance, Δheld)` to the account if the unheld balance stays `>= 0`; `None`,
/// changing nothing, otherwise (or when there is no account). A concurrent writer waits on
/// the row lock and re-checks the condition against the committed row.
pub(super) async fn move_account(
    conn: &mut PgConnection,
    user_id: i64,
    (d_balance, d_held): (i64, i64),
    now: Timestamp,
) -> StoreResult<Option<(i64, i64)>> {
    Ok(sqlx::query_as(sql::MOVE_POINTS)
        .bind(user_id)
        .bind(d_balance)
        .bind(d_held)
        .bind(now.millis())
        .fetch_optional(conn)
        .await?)
}

/// Applies `(Δremaining, Δheld)` to one lot; the CHECKs refuse anything out of range.
pub(super) async fn move_lot(
    conn: &mut PgConnection,
    lot_id: i64,
    (d_remaining, d_held): (i64, i64),
) -> StoreResult<()> {
    let done = sqlx::query(sql::MOVE_LOT)
        .bind(lot_id)
        .bind(d_remaining)
        .bind(d_held)
        .execute(conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!("point lot {lot_id} vanished")));
    }
    Ok(())
}

pub(super) async fn insert_lot(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    expires_at: Option<Timestamp>,
    (source, order_id): (&str, Option<i64>),
    now: Timestamp,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(sql::INSERT_LOT)
        .bind(user_id)
        .bind(amount)
        .bind(expires_at.map(Timestamp::millis))
        .bind(source)
        .bind(order_id)
        .bind(now.millis())
        .fetch_one(conn)
        .await?)
}

/// Takes `amount` from the buyer's unheld lot remainders, soonest-expiring first, applying
/// `kind`'s effect to each lot and appending one row per lot. Called with the account's row
/// lock held and the account already moved (and guarded), so the lots must cover it.
pub(super) async fn take_from_lots(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    (kind, order_id): (PointsKind, Option<i64>),
    (reason, key): (Option<&str>, Option<&str>),
    now: Timestamp,
) -> StoreResult<()> {
    let rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, remaining - held, expires_at FROM point_lots \
         WHERE user_id = $1 AND remaining > 0 AND remaining > held \
         ORDER BY id FOR UPDATE",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    let lots: Vec<LotFree> = rows
        .into_iter()
        .map(|(lot_id, free, expires_at)| LotFree {
            lot_id,
            free,
            expires_at: expires_at.map(Timestamp::from_millis),
        })
        .filter(|lot| kind != PointsKind::Hold || lot.holdable_at(now))
        .collect();
    let taken = take_soonest_expiring(&lots, amount).ok_or_else(|| {
        StoreError::Corrupt(format!("lots of user {user_id} hold less than its account"))
    })?;
    for (lot_id, take) in taken {
        // A negative adjustment's row is signed; its effect on the lot is `-take` either way.
        let signed = if kind == PointsKind::Adjust {
            -take
        } else {
            take
        };
        move_lot(conn, lot_id, kind.effect(signed)).await?;
        let row = LedgerRow {
            user_id,
            kind,
            amount: signed,
            lot_id: Some(lot_id),
            order_id,
            reason,
            idempotency_key: key,
        };
        append_ledger(conn, &row, now).await?;
    }
    Ok(())
}

/// The buyer and the points their confirmed order earns: `None` when there is no such
/// confirmed order, `Some(None)` when it earns nothing (too small, or it already earned).
async fn earnable(
    conn: &mut PgConnection,
    earning: &Earning,
) -> StoreResult<Option<Option<(i64, i64)>>> {
    let order: Option<(i64, i64)> = sqlx::query_as(sql::CONFIRMED_ORDER_PAYABLE)
        .bind(earning.order_id)
        .fetch_optional(&mut *conn)
        .await?;
    // Belt and braces beside the event id: an order earns once (UNIQUE index too).
    let earned_before: bool = sqlx::query_scalar(sql::EARNED_BEFORE)
        .bind(earning.order_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(order.map(|(user_id, payable)| {
        let amount = crate::domain::points::earned_points(payable, earning.rate_bps);
        Some((user_id, amount)).filter(|(_, amount)| *amount > 0 && !earned_before)
    }))
}

pub(super) async fn earn(
    pool: &PgPool,
    earning: &Earning,
    now: Timestamp,
) -> StoreResult<EarnOutcome> {
    let mut tx = pool.begin().await?;
    // Several nodes handling the same event: the second waits on the first's key, then
    // inserts nothing.
    let first = sqlx::query(sql::CLAIM_EVENT)
        .bind(earning.consumer)
        .bind(earning.event_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
    if first.rows_affected() == 0 {
        return Ok(EarnOutcome::AlreadyProcessed);
    }
    let Some(earnable) = earnable(&mut tx, earning).await? else {
        // Not recorded: the event claims more than the books show, so it is retried (and
        // kept as a dead letter if it never comes true).
        tx.rollback().await?;
        return Ok(EarnOutcome::NotConfirmed);
    };
    let Some((user_id, amount)) = earnable else {
        // Recorded as processed all the same: the event is done with.
        tx.commit().await?;
        return Ok(EarnOutcome::Nothing);
    };
    let (balance, held) = credit_account(&mut tx, user_id, amount, now).await?;
    let expires_at = Some(earning.expires_at);
    let source = ("earn", Some(earning.order_id));
    let lot_id = insert_lot(&mut tx, user_id, amount, expires_at, source, now).await?;
    let row = LedgerRow {
        user_id,
        kind: PointsKind::Earn,
        amount,
        lot_id: Some(lot_id),
        order_id: Some(earning.order_id),
        reason: None,
        idempotency_key: None,
    };
    append_ledger(&mut tx, &row, now).await?;
    let change = PointsChanged {
        user_id,
        amount,
        balance,
        held,
        order_id: Some(earning.order_id),
        lot_id: Some(lot_id),
        expires_at,
        reason: None,
    };
    let event = events::points_changed(events::POINTS_EARNED, &change);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(EarnOutcome::Earned {
        user_id,
        amount,
        lot_id,
    })
}

/// Takes back, inside a return's transaction, the share of the points order `order_id`
/// earned that its returned part of `part_payable` won accounts for
/// (`domain::points::earned_share_taken_back`), from the lot it earned and only what that
/// lot has unheld: a negative `adjust` row on the lot, as an admin's correction writes, and
/// `points.adjusted`. The share is of the parts the purchase earned on: those confirmed and
/// not returned before the earn (`sql::EARNED_ON_PAYABLES`). `None` when there is nothing
/// to take: the purchase has not earned yet (the earning consumer runs after the
/// confirmation commits, and then counts only what is still confirmed), earned nothing, or
/// its lot was spent or expired.
pub(in crate::store::postgres) async fn take_back_earned_in(
    conn: &mut PgConnection,
    (order_id, user_id): (i64, i64),
    part_payable: i64,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Option<NewEvent>> {
    // The account's row lock first, as every writer of lots takes it: the lot's unheld
    // remainder read next stays as read until this transaction ends.
    sqlx::query("SELECT 1 FROM point_accounts WHERE user_id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let lot: Option<(i64, i64, i64, i64)> = sqlx::query_as(sql::EARNED_LOT)
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((lot_id, earned, unheld, earned_at)) = lot else {
        return Ok(None);
    };
    let earned_on: i64 = sqlx::query_scalar(sql::EARNED_ON_PAYABLES)
        .bind(order_id)
        .bind(earned_at)
        .fetch_one(&mut *conn)
        .await?;
    let take = earned_share_taken_back(earned, part_payable, earned_on, unheld);
    if take == 0 {
        return Ok(None);
    }
    let effect = PointsKind::Adjust.effect(-take);
    let (balance, held) = move_account(conn, user_id, effect, now)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "points of user {user_id} hold less than lot {lot_id}"
            ))
        })?;
    move_lot(conn, lot_id, effect).await?;
    let row = LedgerRow {
        user_id,
        kind: PointsKind::Adjust,
        amount: -take,
        lot_id: Some(lot_id),
        order_id: Some(order_id),
        reason: Some(reason),
        idempotency_key: None,
    };
    append_ledger(conn, &row, now).await?;
    let change = PointsChanged {
        user_id,
        amount: -take,
        balance,
        held,
        order_id: Some(order_id),
        lot_id: Some(lot_id),
        expires_at: None,
        reason: Some(reason.to_owned()),
    };
    Ok(Some(events::points_changed(
        events::POINTS_ADJUSTED,
        &change,
    )))
}
