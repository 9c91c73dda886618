//! Loyalty points on PostgreSQL, where several nodes write at once. Every writer takes the
//! buyer's account row first (the conditional `UPDATE … WHERE balance - held >= $a`, or the
//! upsert that credits it) and only then reads and changes that buyer's lots, so the lots
//! it sees are the ones the previous holder of the row lock committed. A hold's status
//! change (`UPDATE … WHERE status = $from`), an admin key (`ON CONFLICT DO NOTHING`) and a
//! processed event (`ON CONFLICT DO NOTHING`) are claimed before the account: those are
//! different rows for different requests, so there is no lock cycle. The event is
//! appended last, as `outbox::append` requires.
//!
//! The `*_in` functions work inside a caller's transaction and return the event instead of
//! appending it, so order placement can hold points in its own transaction later.

use super::{classify, outbox, ts, PgStore};
use crate::domain::events::{self, Event, NewEvent, PointsChanged};
use crate::domain::points::{take_soonest_expiring, HoldStatus, LotFree, PointsKind};
use crate::domain::{Role, Timestamp};
use crate::store::{
    EarnOutcome, Earning, ExpiredPoints, HoldOutcome, NewPointsOperation, Page, PageRequest,
    PointsAccount, PointsAudit, PointsAuditRows, PointsExpiring, PointsHold, PointsLedgerRecord,
    PointsOperationKind, PointsOperationOutcome, PointsOperationRecord, PointsStore, PointsSummary,
    StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::Row;

/// One ledger row about to be appended.
struct LedgerRow<'a> {
    user_id: i64,
    kind: PointsKind,
    amount: i64,
    lot_id: Option<i64>,
    order_id: Option<i64>,
    reason: Option<&'a str>,
    idempotency_key: Option<&'a str>,
}

async fn append_ledger(
    conn: &mut PgConnection,
    row: &LedgerRow<'_>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO point_ledger \
             (user_id, kind, amount, lot_id, order_id, reason, idempotency_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.user_id)
    .bind(row.kind.as_str())
    .bind(row.amount)
    .bind(row.lot_id)
    .bind(row.order_id)
    .bind(row.reason)
    .bind(row.idempotency_key)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `amount` (> 0) to the buyer's balance, opening the account if needed; takes the
/// account's row lock.
async fn credit_account(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    now: Timestamp,
) -> StoreResult<(i64, i64)> {
    debug_assert!(amount > 0, "a credit is positive");
    Ok(sqlx::query_as(
        "INSERT INTO point_accounts (user_id, balance, held, updated_at) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (user_id) DO UPDATE SET balance = point_accounts.balance + excluded.balance, \
             updated_at = excluded.updated_at \
         RETURNING balance, held",
    )
    .bind(user_id)
    .bind(amount)
    .bind(now.millis())
    .fetch_one(conn)
    .await?)
}

/// Applies `(Δbalance, Δheld)` to the account if the unheld balance stays `>= 0`; `None`,
/// changing nothing, otherwise (or when there is no account). A concurrent writer waits on
/// the row lock and re-checks the condition against the committed row.
async fn move_account(
    conn: &mut PgConnection,
    user_id: i64,
    (d_balance, d_held): (i64, i64),
    now: Timestamp,
) -> StoreResult<Option<(i64, i64)>> {
    Ok(sqlx::query_as(
        "UPDATE point_accounts SET balance = balance + $2, held = held + $3, updated_at = $4 \
         WHERE user_id = $1 AND (balance + $2) - (held + $3) >= 0 \
         RETURNING balance, held",
    )
    .bind(user_id)
    .bind(d_balance)
    .bind(d_held)
    .bind(now.millis())
    .fetch_optional(conn)
    .await?)
}

/// Applies `(Δremaining, Δheld)` to one lot; the CHECKs refuse anything out of range.
async fn move_lot(
    conn: &mut PgConnection,
    lot_id: i64,
    (d_remaining, d_held): (i64, i64),
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE point_lots SET remaining = remaining + $2, held = held + $3 WHERE id = $1",
    )
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

async fn insert_lot(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    expires_at: Option<Timestamp>,
    (source, order_id): (&str, Option<i64>),
    now: Timestamp,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO point_lots (user_id, amount, remaining, held, expires_at, source, order_id, \
             created_at) \
         VALUES ($1, $2, $2, 0, $3, $4, $5, $6) RETURNING id",
    )
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
async fn take_from_lots(
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

/// Holds `amount` for the buyer's order inside the caller's transaction: the hold row
/// (`order_id` is its key: a second hold of one order waits, then does nothing), the guarded
/// account, the lots that expire first, one `hold` row per lot.
pub(super) async fn hold_in(
    conn: &mut PgConnection,
    user_id: i64,
    amount: i64,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<Result<(PointsHold, NewEvent), HoldOutcome>> {
    let inserted = sqlx::query(
        "INSERT INTO point_holds (order_id, user_id, amount, status, created_at, updated_at) \
         SELECT o.id, o.user_id, $3, 'held', $4, $4 FROM orders o \
         JOIN point_accounts a ON a.user_id = o.user_id \
         WHERE o.id = $1 AND o.user_id = $2 \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(user_id)
    .bind(amount)
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        let (known, mine): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM point_holds WHERE order_id = $1), \
                    EXISTS (SELECT 1 FROM orders WHERE id = $1 AND user_id = $2)",
        )
        .bind(order_id)
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Err(match (known, mine) {
            (true, _) => HoldOutcome::AlreadyHeld,
            // The buyer's own order, but no account: nothing to hold.
            (false, true) => HoldOutcome::Insufficient,
            (false, false) => HoldOutcome::UnknownOrder,
        }));
    }
    let Some((balance, held)) =
        move_account(conn, user_id, PointsKind::Hold.effect(amount), now).await?
    else {
        return Ok(Err(HoldOutcome::Insufficient));
    };
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
    let event = hold_event(events::POINTS_HELD, &hold);
    Ok(Ok((hold, event)))
}

/// Moves the order's hold to `to` (released, spent or refunded) inside the caller's
/// transaction: a conditional write on its status, the account, then the same lots the
/// earlier rows touched, one row per lot. `None`, changing nothing, when the hold is not in
/// the status `to` needs.
pub(super) async fn step_hold_in(
    conn: &mut PgConnection,
    order_id: i64,
    to: HoldStatus,
    now: Timestamp,
) -> StoreResult<Option<(PointsHold, NewEvent)>> {
    let Some((from, kind, source_kind)) = to.step() else {
        return Ok(None);
    };
    let stepped: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE point_holds SET status = $3, updated_at = $4 \
         WHERE order_id = $1 AND status = $2 RETURNING user_id, amount",
    )
    .bind(order_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now.millis())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((user_id, amount)) = stepped else {
        return Ok(None);
    };
    let (balance, held) = move_account(conn, user_id, kind.effect(amount), now)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("points account of user {user_id}")))?;
    let per_lot: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT lot_id, SUM(amount)::BIGINT FROM point_ledger \
         WHERE order_id = $1 AND kind = $2 AND lot_id IS NOT NULL \
         GROUP BY lot_id ORDER BY MIN(id)",
    )
    .bind(order_id)
    .bind(source_kind.as_str())
    .fetch_all(&mut *conn)
    .await?;
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
    let event = hold_event(event_type, &hold);
    Ok(Some((hold, event)))
}

fn operation_from_row(row: &PgRow) -> StoreResult<PointsOperationRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(PointsOperationRecord {
        id: row.try_get("id")?,
        admin_id: row.try_get("admin_id")?,
        user_id: row.try_get("user_id")?,
        kind: PointsOperationKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("points operation kind {kind:?}")))?,
        amount: row.try_get("amount")?,
        reason: row.try_get("reason")?,
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")?
            .map(Timestamp::from_millis),
        balance_after: row.try_get("balance_after")?,
        held_after: row.try_get("held_after")?,
        created_at: ts(row, "created_at")?,
    })
}

const OPERATION_COLUMNS: &str = "id, admin_id, user_id, kind, amount, reason, expires_at, \
     balance_after, held_after, created_at";

/// Applies a grant or an adjustment whose key was just claimed; the caller rolls back on a
/// refusal.
async fn apply_operation(
    conn: &mut PgConnection,
    op: &NewPointsOperation,
    now: Timestamp,
) -> StoreResult<Result<(i64, i64, &'static str), PointsOperationOutcome>> {
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(op.user_id)
        .fetch_optional(&mut *conn)
        .await?;
    if role.as_deref() != Some(Role::Buyer.as_str()) {
        return Ok(Err(PointsOperationOutcome::UnknownUser));
    }
    let key = Some(op.idempotency_key.as_str());
    let reason = Some(op.reason.as_str());
    if op.amount > 0 {
        let (balance, held) = credit_account(conn, op.user_id, op.amount, now).await?;
        let (source, kind, event_type) = match op.kind {
            PointsOperationKind::Grant => ("grant", PointsKind::Earn, events::POINTS_GRANTED),
            PointsOperationKind::Adjust => ("adjust", PointsKind::Adjust, events::POINTS_ADJUSTED),
        };
        let lot_id = insert_lot(
            conn,
            op.user_id,
            op.amount,
            op.expires_at,
            (source, None),
            now,
        )
        .await?;
        let row = LedgerRow {
            user_id: op.user_id,
            kind,
            amount: op.amount,
            lot_id: Some(lot_id),
            order_id: None,
            reason,
            idempotency_key: key,
        };
        append_ledger(conn, &row, now).await?;
        return Ok(Ok((balance, held, event_type)));
    }
    let Some((balance, held)) =
        move_account(conn, op.user_id, PointsKind::Adjust.effect(op.amount), now).await?
    else {
        return Ok(Err(PointsOperationOutcome::Insufficient));
    };
    let how = (PointsKind::Adjust, None);
    take_from_lots(conn, op.user_id, -op.amount, how, (reason, key), now).await?;
    Ok(Ok((balance, held, events::POINTS_ADJUSTED)))
}

/// The answer to a key used before: its stored result when the request is the same,
/// a mismatch otherwise.
async fn earlier_operation(
    conn: &mut PgConnection,
    op: &NewPointsOperation,
) -> StoreResult<PointsOperationOutcome> {
    let row = sqlx::query(&format!(
        "SELECT {OPERATION_COLUMNS}, request_hash FROM point_operations \
         WHERE admin_id = $1 AND idempotency_key = $2"
    ))
    .bind(op.admin_id)
    .bind(&op.idempotency_key)
    .fetch_one(conn)
    .await?;
    let hash: String = row.try_get("request_hash")?;
    Ok(if hash == op.request_hash {
        PointsOperationOutcome::Replayed(operation_from_row(&row)?)
    } else {
        PointsOperationOutcome::Mismatch
    })
}

async fn run_operation(
    pool: &PgPool,
    op: &NewPointsOperation,
    now: Timestamp,
) -> StoreResult<PointsOperationOutcome> {
    let mut tx = pool.begin().await?;
    // A concurrent request with the same key waits on this key's index entry, then finds
    // the first one's row and replays it.
    let claimed: Option<i64> = sqlx::query_scalar(
        "INSERT INTO point_operations (admin_id, idempotency_key, request_hash, user_id, kind, \
             amount, reason, expires_at, balance_after, held_after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9) \
         ON CONFLICT (admin_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(op.admin_id)
    .bind(&op.idempotency_key)
    .bind(&op.request_hash)
    .bind(op.user_id)
    .bind(op.kind.as_str())
    .bind(op.amount)
    .bind(&op.reason)
    .bind(op.expires_at.map(Timestamp::millis))
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(op_id) = claimed else {
        return earlier_operation(&mut tx, op).await;
    };
    let (balance, held, event_type) = match apply_operation(&mut tx, op, now).await? {
        Ok(applied) => applied,
        // Dropping the transaction rolls it back, key claim included.
        Err(refused) => return Ok(refused),
    };
    let row = sqlx::query(&format!(
        "UPDATE point_operations SET balance_after = $2, held_after = $3 WHERE id = $1 \
         RETURNING {OPERATION_COLUMNS}"
    ))
    .bind(op_id)
    .bind(balance)
    .bind(held)
    .fetch_one(&mut *tx)
    .await?;
    let record = operation_from_row(&row)?;
    let event = events::points_changed(
        event_type,
        &PointsChanged {
            user_id: op.user_id,
            amount: op.amount,
            balance,
            held,
            order_id: None,
            lot_id: None,
            expires_at: op.expires_at,
            reason: Some(op.reason.clone()),
        },
    );
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(PointsOperationOutcome::Done(record))
}

/// The buyer and the points their confirmed order earns; `None` when it earns nothing
/// (too small, not confirmed, no such order, or it already earned).
async fn earnable(conn: &mut PgConnection, earning: &Earning) -> StoreResult<Option<(i64, i64)>> {
    let order: Option<(i64, i64)> = sqlx::query_as(
        "SELECT user_id, payable FROM orders WHERE id = $1 AND status = 'confirmed'",
    )
    .bind(earning.order_id)
    .fetch_optional(&mut *conn)
    .await?;
    // Belt and braces beside the event id: an order earns once (UNIQUE index too).
    let earned_before: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM point_lots WHERE order_id = $1 AND source = 'earn')",
    )
    .bind(earning.order_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(order
        .filter(|_| !earned_before)
        .map(|(user_id, payable)| {
            let amount = crate::domain::points::earned_points(payable, earning.rate_bps);
            (user_id, amount)
        })
        .filter(|(_, amount)| *amount > 0))
}

async fn earn(pool: &PgPool, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
    let mut tx = pool.begin().await?;
    // Several nodes handling the same event: the second waits on the first's key, then
    // inserts nothing.
    let first = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(earning.consumer)
    .bind(earning.event_id)
    .bind(now.millis())
    .execute(&mut *tx)
    .await?;
    if first.rows_affected() == 0 {
        return Ok(EarnOutcome::AlreadyProcessed);
    }
    let Some((user_id, amount)) = earnable(&mut tx, earning).await? else {
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

async fn step_hold(
    pool: &PgPool,
    order_id: i64,
    to: HoldStatus,
    now: Timestamp,
) -> StoreResult<Option<PointsHold>> {
    let mut tx = pool.begin().await?;
    let Some((hold, event)) = step_hold_in(&mut tx, order_id, to, now).await? else {
        return Ok(None);
    };
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(Some(hold))
}

async fn hold(
    pool: &PgPool,
    user_id: i64,
    amount: i64,
    order_id: i64,
    now: Timestamp,
) -> StoreResult<HoldOutcome> {
    let mut tx = pool.begin().await?;
    match hold_in(&mut tx, user_id, amount, order_id, now).await? {
        Ok((hold, event)) => {
            outbox::append(&mut tx, &[event], now).await?;
            tx.commit().await?;
            Ok(HoldOutcome::Held(hold))
        }
        Err(refused) => Ok(refused),
    }
}

/// Expires the unheld part of the buyer's due lots: `remaining` drops to `held`. The
/// account's row lock comes first, as for every writer of lots.
async fn expire(pool: &PgPool, user_id: i64, now: Timestamp) -> StoreResult<Option<ExpiredPoints>> {
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

fn kind_of(raw: &str) -> StoreResult<PointsKind> {
    PointsKind::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("points kind {raw:?}")))
}

async fn all<T>(conn: &mut PgConnection, sql: &'static str) -> StoreResult<Vec<T>>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
{
    Ok(sqlx::query_as(sql).fetch_all(conn).await?)
}

/// REPEATABLE READ: every statement sees the same snapshot, so balances, lots and ledger
/// agree even while holds commit.
async fn points_audit(pool: &PgPool) -> StoreResult<PointsAudit> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = PointsAuditRows {
        accounts: all(&mut tx, "SELECT user_id, balance, held FROM point_accounts").await?,
        ledger_by_user: all(
            &mut tx,
            "SELECT user_id, kind, SUM(amount)::BIGINT FROM point_ledger GROUP BY user_id, kind",
        )
        .await?,
        lot_sums: all(
            &mut tx,
            "SELECT user_id, SUM(remaining)::BIGINT, SUM(held)::BIGINT FROM point_lots \
             GROUP BY user_id",
        )
        .await?,
        lots: all(
            &mut tx,
            "SELECT id, user_id, amount, remaining, held FROM point_lots ORDER BY id",
        )
        .await?,
        ledger_by_lot: all(
            &mut tx,
            "SELECT lot_id, kind, SUM(amount)::BIGINT FROM point_ledger \
             WHERE lot_id IS NOT NULL GROUP BY lot_id, kind",
        )
        .await?,
        holds: all(
            &mut tx,
            "SELECT order_id, user_id, amount, status FROM point_holds ORDER BY order_id",
        )
        .await?,
        ledger_by_order: all(
            &mut tx,
            "SELECT order_id, kind, SUM(amount)::BIGINT FROM point_ledger \
             WHERE order_id IS NOT NULL AND kind IN ('hold', 'release', 'spend', 'refund') \
             GROUP BY order_id, kind",
        )
        .await?,
    };
    tx.commit().await?;
    PointsAudit::assemble(rows)
}

fn ledger_from_row(row: &PgRow) -> StoreResult<PointsLedgerRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(PointsLedgerRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: kind_of(&kind)?,
        amount: row.try_get("amount")?,
        lot_id: row.try_get("lot_id")?,
        order_id: row.try_get("order_id")?,
        reason: row.try_get("reason")?,
        created_at: ts(row, "created_at")?,
    })
}

async fn summary(pool: &PgPool, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let account: Option<(i64, i64)> =
        sqlx::query_as("SELECT balance, held FROM point_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let expiring: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT expires_at, SUM(remaining - held)::BIGINT FROM point_lots \
         WHERE user_id = $1 AND remaining > 0 AND expires_at <= $2 AND remaining > held \
         GROUP BY expires_at ORDER BY expires_at",
    )
    .bind(user_id)
    .bind(horizon.millis())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let (balance, held) = account.unwrap_or_default();
    Ok(PointsSummary {
        account: PointsAccount {
            user_id,
            balance,
            held,
        },
        expiring: expiring
            .into_iter()
            .map(|(at, amount)| PointsExpiring {
                amount,
                expires_at: Timestamp::from_millis(at),
            })
            .collect(),
    })
}

async fn history(
    pool: &PgPool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<PointsLedgerRecord>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT id, user_id, kind, amount, lot_id, order_id, reason, created_at \
         FROM point_ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(user_id)
    .bind(page.size)
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM point_ledger WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(ledger_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}

async fn unprocessed_confirmations(
    pool: &PgPool,
    consumer: &str,
    limit: i64,
) -> StoreResult<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.created_at \
         FROM outbox o \
         WHERE o.event_type = 'order.confirmed' AND NOT EXISTS ( \
             SELECT 1 FROM processed_events p WHERE p.consumer = $1 AND p.event_id = o.id) \
         ORDER BY o.id LIMIT $2",
    )
    .bind(consumer)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Event {
                id: row.try_get("id")?,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                created_at: ts(row, "created_at")?,
            })
        })
        .collect()
}

#[async_trait]
impl PointsStore for PgStore {
    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
        summary(&self.pool, user_id, horizon)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>> {
        history(&self.pool, user_id, page).await.map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(user_id = operation.user_id, kind = operation.kind.as_str()))]
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        run_operation(&self.pool, operation, now)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(event_id = earning.event_id, order_id = earning.order_id))]
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
        earn(&self.pool, earning, now).await.map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id, order_id = order_id))]
    async fn hold_points(
        &self,
        user_id: i64,
        amount: i64,
        order_id: i64,
        now: Timestamp,
    ) -> StoreResult<HoldOutcome> {
        hold(&self.pool, user_id, amount, order_id, now)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn release_points(
        &self,
        order_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<PointsHold>> {
        step_hold(&self.pool, order_id, HoldStatus::Released, now)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn spend_points(&self, order_id: i64, now: Timestamp) -> StoreResult<Option<PointsHold>> {
        step_hold(&self.pool, order_id, HoldStatus::Spent, now)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn refund_points(
        &self,
        order_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<PointsHold>> {
        step_hold(&self.pool, order_id, HoldStatus::Refunded, now)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all)]
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM point_lots \
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1 \
                 AND remaining > held \
             ORDER BY user_id LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e.into()))
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>> {
        expire(&self.pool, user_id, now).await.map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(name = name, holder = holder))]
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        // Two nodes at once: the second waits on the first's row, then re-checks the
        // condition against it and updates nothing.
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until.millis())
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e.into()))?;
        Ok(taken.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn unprocessed_confirmations(
        &self,
        consumer: &str,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        unprocessed_confirmations(&self.pool, consumer, limit)
            .await
            .map_err(classify)
    }

    #[tracing::instrument(skip_all)]
    async fn points_audit(&self) -> StoreResult<PointsAudit> {
        points_audit(&self.pool).await.map_err(classify)
    }
}
