//! Loyalty points on PostgreSQL, where several nodes write at once. Every writer takes the
//! buyer's account row first (the conditional `UPDATE … WHERE balance - held >= $a`, or the
//! upsert that credits it) and only then reads and changes that buyer's lots, so the lots
//! it sees are the ones the previous holder of the row lock committed. A hold's status
//! change (`UPDATE … WHERE status = $from`), an admin key (`ON CONFLICT DO NOTHING`) and a
//! processed event (`ON CONFLICT DO NOTHING`) are claimed before the account: those are
//! different rows for different requests, so there is no lock cycle. The event is
//! appended last, as `outbox::append` requires.
//!
//! - `ledger.rs` — the ledger rows every change appends (a leaf);
//! - `lots.rs` — the account and its lots, earning on a confirmed order and taking a
//!   returned part's share of it back;
//! - `holds.rs` — points an order holds, then spends, releases or refunds;
//! - `admin.rs` — admin grants and adjustments; `expiry.rs` — expiry of due lots;
//! - `reads.rs` — summary, history, confirmations to earn on, and the audit.
//!
//! The `*_in` functions work inside a caller's transaction and return the event instead of
//! appending it, so order placement holds points in its own transaction.

mod admin;
mod expiry;
mod holds;
mod ledger;
mod lots;
mod reads;

use super::conn::PgStore;
use crate::domain::Timestamp;
use crate::store::{
    sql, EarnOutcome, Earning, ExpiredPoints, NewPointsOperation, Page, PageRequest, PointsAudit,
    PointsLedgerRecord, PointsOperationOutcome, PointsStore, PointsSummary, StoreResult,
};
use async_trait::async_trait;
pub(super) use holds::{hold_in, refund_share_in, step_hold_in};
pub(super) use lots::take_back_earned_in;

#[async_trait]
impl PointsStore for PgStore {
    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
        reads::summary(&self.pool, user_id, horizon).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>> {
        reads::history(&self.pool, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(user_id = operation.user_id, kind = operation.kind.as_str()))]
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        admin::run_operation(&self.pool, operation, now).await
    }

    #[tracing::instrument(skip_all, fields(event_id = earning.event_id, order_id = earning.order_id))]
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
        lots::earn(&self.pool, earning, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::USERS_WITH_EXPIRED_POINTS)
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
        expiry::expire(&self.pool, user_id, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn points_audit(&self) -> StoreResult<PointsAudit> {
        reads::points_audit(&self.pool).await
    }
}
