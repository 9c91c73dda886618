//! Leases on PostgreSQL: one conditional upsert, serialised by the lease's row lock.

use super::PgStore;
use crate::domain::Timestamp;
use crate::store::{LeaseStore, StoreResult};
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
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until.millis())
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }
}
