use super::SqliteStore;
use crate::domain::events::Event;
use crate::domain::Timestamp;
use crate::store::{OutboxStore, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn last_event_id(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM outbox")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at
             FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Event {
                    id: row.try_get("id")?,
                    aggregate_type: row.try_get("aggregate_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    event_type: row.try_get("event_type")?,
                    payload: row.try_get("payload")?,
                    created_at: Timestamp::from_millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }
}
