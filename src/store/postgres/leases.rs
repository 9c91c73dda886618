//! Leases on PostgreSQL: one conditional upsert (`sql::TRY_LEASE`), serialised by the
//! lease's row lock.

use super::conn::PgStore;
use crate::domain::Timestamp;
use crate::store::rows::job_run_from_row;
use crate::store::{sql, JobRunRecord, LeaseStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl LeaseStore for PgStore {
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
        let taken = sqlx::query(sql::TRY_LEASE)
            .bind(name)
            .bind(holder)
            .bind(until.millis())
            .bind(now.millis())
            .execute(&self.pool)
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(name = %run.name))]
    async fn record_job_run(&self, run: &JobRunRecord) -> StoreResult<()> {
        sqlx::query(sql::RECORD_JOB_RUN)
            .bind(&run.name)
            .bind(&run.holder)
            .bind(run.started_at.millis())
            .bind(run.duration_ms)
            .bind(run.error.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn job_runs(&self) -> StoreResult<Vec<JobRunRecord>> {
        let rows = sqlx::query(sql::JOB_RUNS).fetch_all(&self.pool).await?;
        rows.iter().map(job_run_from_row).collect()
    }
}
