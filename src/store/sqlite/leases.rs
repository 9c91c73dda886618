//! Leases on SQLite: one conditional upsert (`sql::TRY_LEASE`) in a write transaction; the
//! jobs' last runs beside them.

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::rows::job_run_from_row;
use crate::store::{sql, JobRunRecord, LeaseStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl LeaseStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(name = name, holder = holder))]
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(sql::TRY_LEASE)
            .bind(name)
            .bind(holder)
            .bind(until.millis())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(taken.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(name = %run.name))]
    async fn record_job_run(&self, run: &JobRunRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::RECORD_JOB_RUN)
            .bind(&run.name)
            .bind(&run.holder)
            .bind(run.started_at.millis())
            .bind(run.duration_ms)
            .bind(run.error.as_deref())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn job_runs(&self) -> StoreResult<Vec<JobRunRecord>> {
        let rows = sqlx::query(sql::JOB_RUNS).fetch_all(&self.reader).await?;
        rows.iter().map(job_run_from_row).collect()
    }
}
