//! Leases on PostgreSQL: one conditional upsert (`sql::TRY_LEASE`), serialised by the
//! lease's row lock.

use super::conn::PgStore;
use crate::domain::Timestamp;
use crate::store::{sql, LeaseStore, StoreResult};
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
}
