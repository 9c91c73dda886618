//! Relay progress on SQLite: the shared statements (`sql::RELAY_POSITION`,
//! `sql::ADVANCE_RELAY`), writes in a write transaction.

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::{sql, RelayStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl RelayStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(name = name))]
    async fn relay_position(&self, name: &str) -> StoreResult<i64> {
        let position: Option<i64> = sqlx::query_scalar(sql::RELAY_POSITION)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(position.unwrap_or(0))
    }

    #[tracing::instrument(skip_all, fields(name = name, last_event_id = last_event_id))]
    async fn advance_relay(
        &self,
        name: &str,
        last_event_id: i64,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::ADVANCE_RELAY)
            .bind(name)
            .bind(last_event_id)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
