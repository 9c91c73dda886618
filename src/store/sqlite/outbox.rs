//! The outbox on SQLite (DESIGN §4): events appended in their state change's transaction,
//! read back in id order. SQLite has one writer, so ids become visible in the order they
//! are drawn and a reader tailing `id > last` never skips one.

use super::conn::SqliteStore;
use crate::domain::events::{Event, NewEvent};
use crate::domain::Timestamp;
use crate::store::rows::event_from_row;
use crate::store::{sql, Backlog, OutboxStore, StoreResult};
use async_trait::async_trait;
use sqlx::SqliteConnection;

/// Appends `events` in order, one statement each, inside the caller's transaction.
/// Returns the id of the last event appended (`None` if none were given).
pub(super) async fn append(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    now: Timestamp,
) -> StoreResult<Option<i64>> {
    let mut last = None;
    for event in events {
        let appended = sqlx::query(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event.aggregate_type)
        .bind(event.aggregate_id)
        .bind(event.event_type)
        .bind(&event.payload)
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
        last = Some(appended.last_insert_rowid());
    }
    Ok(last)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn last_event_id(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::LAST_EVENT_ID)
            .fetch_one(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(after = after, limit = limit))]
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(sql::EVENTS_AFTER)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn append_events(
        &self,
        claim: Option<(&str, i64)>,
        events: &[NewEvent],
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some((consumer, event_id)) = claim {
            let claimed = sqlx::query(sql::CLAIM_EVENT)
                .bind(consumer)
                .bind(event_id)
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
            if claimed.rows_affected() == 0 {
                return Ok(false);
            }
        }
        append(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(consumer = consumer, backlog = ?backlog))]
    async fn unprocessed_events(
        &self,
        consumer: &str,
        backlog: Backlog,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(sql::unprocessed_events(backlog))
            .bind(consumer)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
