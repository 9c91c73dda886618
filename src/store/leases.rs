//! Leases: one holder at a time per name, for work that must run once per cluster (the
//! scheduler's jobs of DESIGN §4: points expiry, dead-letter retries, settlement), and the
//! record of each such job's last run.

use super::error::StoreResult;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `until`: one conditional upsert
    /// that succeeds when the lease is free, expired, or already `holder`'s.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Keeps `run` as its job's last run, over the one before.
    async fn record_job_run(&self, run: &JobRunRecord) -> StoreResult<()>;
    /// The last run of every job that has run, by name.
    async fn job_runs(&self) -> StoreResult<Vec<JobRunRecord>>;
}

/// How one run of a lease-held job went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRecord {
    pub name: String,
    /// The node that held the lease and ran it.
    pub holder: String,
    pub started_at: Timestamp,
    pub duration_ms: i64,
    /// `None` when it went well; the failure otherwise.
    pub error: Option<String>,
}
