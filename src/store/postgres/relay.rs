//! Relay progress on PostgreSQL: the shared statements (`sql::RELAY_POSITION`,
//! `sql::ADVANCE_RELAY`).

use super::conn::PgStore;
use crate::domain::Timestamp;
use crate::store::{sql, RelayStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl RelayStore for PgStore {
    #[tracing::instrument(skip_all, fields(name = name))]
    async fn relay_position(&self, name: &str) -> StoreResult<i64> {
        let position: Option<i64> = sqlx::query_scalar(sql::RELAY_POSITION)
            .bind(name)
            .fetch_optional(&self.pool)
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
        sqlx::query(sql::ADVANCE_RELAY)
            .bind(name)
            .bind(last_event_id)
            .bind(now.millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
