//! Loyalty points on SQLite. One writer at a time (`BEGIN IMMEDIATE`) makes every write
//! transaction atomic; the guards are still written as conditional writes (`WHERE balance -
//! held >= $a`, `WHERE status = 'held'`, `ON CONFLICT DO NOTHING`) so the SQL says the same
//! thing as the PostgreSQL module, and the CHECKs refuse anything negative.
//!
//! - `ledger.rs` — the ledger rows every change appends (a leaf);
//! - `lots.rs` — the account and its lots, earning on a confirmed order and taking a
//!   returned part's share of it back;
//! - `holds.rs` — points an order holds, then spends, releases or refunds;
//! - `admin.rs` — admin grants and adjustments; `expiry.rs` — expiry of due lots;
//! - `reads.rs` — summary, history, confirmations to earn on, and the audit.
//!
//! The `*_in` functions work inside a caller's transaction and return the event instead of
//! writing it, so order placement holds points in its own transaction.

mod admin;
mod expiry;
mod holds;
mod ledger;
mod lots;
mod reads;

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::{
    sql, EarnOutcome, Earning, ExpiredPoints, NewPointsOperation, Page, PageRequest, PointsAudit,
    PointsLedgerRecord, PointsOperationOutcome, PointsStore, PointsSummary, StoreResult,
};
use async_trait::async_trait;
pub(super) use holds::{hold_all_in, refund_share_in, step_hold_in};
pub(super) use lots::take_back_earned_in;

#[async_trait]
impl PointsStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary> {
        reads::summary(&self.reader, user_id, horizon).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>> {
        reads::history(&self.reader, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(user_id = operation.user_id, kind = operation.kind.as_str()))]
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome> {
        admin::run_operation(self, operation, now).await
    }

    #[tracing::instrument(skip_all, fields(event_id = earning.event_id, order_id = earning.order_id))]
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome> {
        lots::earn(self, earning, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::USERS_WITH_EXPIRED_POINTS)
            .bind(now.millis())
            .bind(limit)
            .fetch_all(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>> {
        expiry::expire(self, user_id, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn points_audit(&self) -> StoreResult<PointsAudit> {
        reads::points_audit(&self.reader).await
    }
}
