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

mod admin;
mod expiry;
mod holds;
mod lots;
mod reads;

use super::PgStore;
use crate::domain::events::Event;
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::{
    EarnOutcome, Earning, ExpiredPoints, NewPointsOperation, Page, PageRequest, PointsAudit,
    PointsLedgerRecord, PointsOperationOutcome, PointsStore, PointsSummary, StoreResult,
};
use admin::run_operation;
use async_trait::async_trait;
use expiry::expire;
pub(super) use holds::{hold_in, step_hold_in};
use lots::earn;
use reads::{history, points_audit, summary, unprocessed_confirmations};
use sqlx::postgres::PgConnection;

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

#[async_trait]
impl PointsStore for PgStore {
    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
        summary(&self.pool, user_id, horizon).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>> {
        history(&self.pool, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(user_id = operation.user_id, kind = operation.kind.as_str()))]
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        run_operation(&self.pool, operation, now).await
    }

    #[tracing::instrument(skip_all, fields(event_id = earning.event_id, order_id = earning.order_id))]
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
        earn(&self.pool, earning, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM point_lots \
             WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1 \
                 AND remaining > held \
             ORDER BY user_id LIMIT $2",
        )
        .bind(now.millis())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>> {
        expire(&self.pool, user_id, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn unprocessed_confirmations(
        &self,
        consumer: &str,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        unprocessed_confirmations(&self.pool, consumer, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn points_audit(&self) -> StoreResult<PointsAudit> {
        points_audit(&self.pool).await
    }
}
