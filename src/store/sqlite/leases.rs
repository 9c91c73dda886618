//! Leases on SQLite: one conditional upsert (`sql::TRY_LEASE`) in a write transaction.

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::{sql, LeaseStore, StoreResult};
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
}
