//! Loyalty points on SQLite. One writer at a time (`BEGIN IMMEDIATE`) makes every write
//! transaction atomic; the guards are still written as conditional writes (`WHERE balance -
//! held >= $a`, `WHERE status = 'held'`, `ON CONFLICT DO NOTHING`) so the SQL says the same
//! thing as the PostgreSQL module, and the CHECKs refuse anything negative.
//!
//! The `*_in` functions work inside a caller's transaction and return the event instead of
//! writing it, so order placement can hold points in its own transaction later.

mod admin;
mod expiry;
mod holds;
mod lots;
mod reads;

use super::SqliteStore;
use crate::domain::events::Event;
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::{
    EarnOutcome, Earning, ExpiredPoints, NewPointsOperation, Page, PageRequest, PointsAccount,
    PointsAudit, PointsExpiring, PointsLedgerRecord, PointsOperationOutcome, PointsStore,
    PointsSummary, StoreResult,
};
use async_trait::async_trait;
pub(super) use holds::{hold_in, step_hold_in};
use reads::{ledger_from_row, points_audit};
use sqlx::SqliteConnection;

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
    conn: &mut SqliteConnection,
    row: &LedgerRow<'_>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO point_ledger
             (user_id, kind, amount, lot_id, order_id, reason, idempotency_key, created_at)
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

#[async_trait]
impl PointsStore for SqliteStore {
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
        let mut tx = self.reader.begin().await?;
        let account: Option<(i64, i64)> =
            sqlx::query_as("SELECT balance, held FROM point_accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let expiring: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT expires_at, SUM(remaining - held) FROM point_lots
             WHERE user_id = $1 AND remaining > 0 AND expires_at <= $2 AND remaining > held
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

    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(
            "SELECT id, user_id, kind, amount, lot_id, order_id, reason, created_at
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

    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        self.operation(operation, now).await
    }

    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
        self.earn(earning, now).await
    }

    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM point_lots
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1
                 AND remaining > held
             ORDER BY user_id LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>> {
        self.expire(user_id, now).await
    }

    async fn unprocessed_confirmations(
        &self,
        consumer: &str,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let rows: Vec<(i64, String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.created_at
             FROM outbox o
             WHERE o.event_type = 'order.confirmed' AND NOT EXISTS (
                 SELECT 1 FROM processed_events p WHERE p.consumer = $1 AND p.event_id = o.id)
             ORDER BY o.id LIMIT $2",
        )
        .bind(consumer)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, aggregate_type, aggregate_id, event_type, payload, created_at)| Event {
                    id,
                    aggregate_type,
                    aggregate_id,
                    event_type,
                    payload,
                    created_at: Timestamp::from_millis(created_at),
                },
            )
            .collect())
    }

    async fn points_audit(&self) -> StoreResult<PointsAudit> {
        // One read transaction: every number comes from the same snapshot.
        let mut tx = self.reader.begin().await?;
        let audit = points_audit(&mut tx).await?;
        tx.commit().await?;
        Ok(audit)
    }
}
