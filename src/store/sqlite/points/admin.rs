//! Admin grants and adjustments, applied once per idempotency key.

use super::lots::{credit_account, insert_lot, move_account, take_from_lots};
use super::{append_ledger, LedgerRow};
use crate::domain::events::{self, PointsChanged};
use crate::domain::points::PointsKind;
use crate::domain::{Role, Timestamp};
use crate::store::sqlite::{write_event, SqliteStore};
use crate::store::{
    NewPointsOperation, PointsOperationKind, PointsOperationOutcome, PointsOperationRecord,
    StoreError, StoreResult,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

fn operation_from_row(row: &SqliteRow) -> StoreResult<PointsOperationRecord> {
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
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

const OPERATION_COLUMNS: &str = "id, admin_id, user_id, kind, amount, reason, expires_at, \
     balance_after, held_after, created_at";

/// Applies a grant or an adjustment whose key was just claimed (row `op_id`); the caller
/// rolls back on a refusal.
async fn apply_operation(
    conn: &mut SqliteConnection,
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
    let taken = -op.amount;
    let Some((balance, held)) =
        move_account(conn, op.user_id, PointsKind::Adjust.effect(op.amount), now).await?
    else {
        return Ok(Err(PointsOperationOutcome::Insufficient));
    };
    let how = (PointsKind::Adjust, None);
    take_from_lots(conn, op.user_id, taken, how, (reason, key), now).await?;
    Ok(Ok((balance, held, events::POINTS_ADJUSTED)))
}

/// The answer to a key used before: its stored result when the request is the same,
/// a mismatch otherwise.
async fn earlier_operation(
    conn: &mut SqliteConnection,
    op: &NewPointsOperation,
) -> StoreResult<PointsOperationOutcome> {
    let row = sqlx::query(&format!(
        "SELECT {OPERATION_COLUMNS}, request_hash FROM point_operations
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

impl SqliteStore {
    pub(super) async fn operation(
        &self,
        op: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        let mut tx = self.write_tx().await?;
        let claimed: Option<i64> = sqlx::query_scalar(
            "INSERT INTO point_operations (admin_id, idempotency_key, request_hash, user_id, kind,
                 amount, reason, expires_at, balance_after, held_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9)
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
        let row = sqlx::query(&format!(
            "UPDATE point_operations SET balance_after = $2, held_after = $3 WHERE id = $1
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
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await?;
        Ok(PointsOperationOutcome::Done(record))
    }
}
