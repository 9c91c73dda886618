//! Admin grants and adjustments, applied once per idempotency key.

use super::ledger::{append_ledger, LedgerRow};
use super::lots::{credit_account, insert_lot, move_account, take_from_lots};
use crate::domain::events::{self, PointsChanged};
use crate::domain::points::PointsKind;
use crate::domain::{Role, Timestamp};
use crate::store::rows::operation_from_row;
use crate::store::sqlite::conn::SqliteStore;
use crate::store::sqlite::outbox;
use crate::store::{
    sql, NewPointsOperation, PointsOperationKind, PointsOperationOutcome, StoreResult,
};
use sqlx::{Row, SqliteConnection};

/// Applies a grant or an adjustment whose key was just claimed; the caller rolls back on a
/// refusal.
async fn apply_operation(
    conn: &mut SqliteConnection,
    op: &NewPointsOperation,
    now: Timestamp,
) -> StoreResult<Result<(i64, i64, &'static str), PointsOperationOutcome>> {
    let role: Option<String> = sqlx::query_scalar(sql::USER_ROLE)
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
        let lot = (source, None);
        let lot_id = insert_lot(conn, op.user_id, op.amount, op.expires_at, lot, now).await?;
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
    conn: &mut SqliteConnection,
    op: &NewPointsOperation,
) -> StoreResult<PointsOperationOutcome> {
    let row = sqlx::query(sql::EARLIER_OPERATION)
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

pub(super) async fn run_operation(
    store: &SqliteStore,
    op: &NewPointsOperation,
    now: Timestamp,
) -> StoreResult<PointsOperationOutcome> {
    let mut tx = store.write_tx().await?;
    let claimed: Option<i64> = sqlx::query_scalar(sql::CLAIM_OPERATION)
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
        let earlier = earlier_operation(&mut tx, op).await?;
        tx.rollback().await?;
        return Ok(earlier);
    };
    let (balance, held, event_type) = match apply_operation(&mut tx, op, now).await? {
        Ok(applied) => applied,
        Err(refused) => {
            tx.rollback().await?;
            return Ok(refused);
        }
    };
    let row = sqlx::query(sql::FINISH_OPERATION)
        .bind(op_id)
        .bind(balance)
        .bind(held)
        .fetch_one(&mut *tx)
        .await?;
    let record = operation_from_row(&row)?;
    let change = PointsChanged {
        user_id: op.user_id,
        amount: op.amount,
        balance,
        held,
        order_id: None,
        lot_id: None,
        expires_at: op.expires_at,
        reason: Some(op.reason.clone()),
    };
    let event = events::points_changed(event_type, &change);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(PointsOperationOutcome::Done(record))
}
