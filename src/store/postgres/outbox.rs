//! The outbox (DESIGN §4) and the one subtlety PostgreSQL adds to it.
//!
//! Outbox ids come from an identity sequence, handed out when a row is inserted, but rows
//! become visible when their transaction commits, and with many writers those orders
//! differ: a reader tailing `id > last` could see id 11 commit before id 10 and never look
//! back. (SQLite has one writer at a time, so it never has this gap.) Every writer therefore
//! takes a *shared* advisory lock just before it inserts outbox rows and keeps it until
//! commit; writers never wait for each other. A reader takes the same key *exclusively*,
//! which waits only for the writers already past that point, then reads: at that instant no
//! transaction holding unpublished ids is in flight, so what it sees is a gap-free prefix.
//! Later writers draw higher ids. The cost is one brief stall of the writers' last step per
//! read, which is why [`append`] must be the last statement of its transaction.

use super::conn::PgStore;
use crate::domain::events::{Event, NewEvent};
use crate::domain::Timestamp;
use crate::store::rows::event_from_row;
use crate::store::{sql, Backlog, OutboxStore, StoreResult};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};

/// Advisory lock key of the outbox horizon (ASCII "stampobx").
const OUTBOX_LOCK_KEY: i64 = 0x7374_616d_706f_6278;

/// Appends `events` in order in one statement. Call it last in the transaction: from here to
/// commit it holds the shared horizon lock, and it must not then wait on any row lock.
/// Returns the id of the last event appended (`None` if none were given).
pub(super) async fn append(
    conn: &mut PgConnection,
    events: &[NewEvent],
    now: Timestamp,
) -> StoreResult<Option<i64>> {
    if events.is_empty() {
        return Ok(None);
    }
    let mut types = Vec::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    let mut names = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for event in events {
        types.push(event.aggregate_type);
        ids.push(event.aggregate_id);
        names.push(event.event_type);
        payloads.push(event.payload.as_str());
    }
    // The lock sits in a materialised CTE joined to every row, so it is taken before the
    // first id is drawn; ORDER BY ord keeps ids in the order the events were given.
    let last: Option<i64> = sqlx::query_scalar(
        "WITH horizon AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($1)), \
         appended AS ( \
             INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at) \
             SELECT e.aggregate_type, e.aggregate_id, e.event_type, e.payload, $6 \
             FROM horizon, UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[]) \
                  WITH ORDINALITY AS e(aggregate_type, aggregate_id, event_type, payload, ord) \
             ORDER BY e.ord \
             RETURNING id) \
         SELECT MAX(id) FROM appended",
    )
    .bind(OUTBOX_LOCK_KEY)
    .bind(&types)
    .bind(&ids)
    .bind(&names)
    .bind(&payloads)
    .bind(now.millis())
    .fetch_one(&mut *conn)
    .await?;
    Ok(last)
}

#[async_trait]
impl OutboxStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn last_event_id(&self) -> StoreResult<i64> {
        last_event_id(&self.pool).await
    }

    #[tracing::instrument(skip_all, fields(after = after, limit = limit))]
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
        events_after(&self.pool, after, limit).await
    }
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn append_events(
        &self,
        claim: Option<(&str, i64)>,
        events: &[NewEvent],
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
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
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Takes the horizon lock exclusively inside `tx`; see the module comment.
async fn wait_for_horizon(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OUTBOX_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn last_event_id(pool: &PgPool) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    wait_for_horizon(&mut tx).await?;
    let id: i64 = sqlx::query_scalar(sql::LAST_EVENT_ID)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

async fn events_after(pool: &PgPool, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
    let mut tx = pool.begin().await?;
    wait_for_horizon(&mut tx).await?;
    let rows = sqlx::query(sql::EVENTS_AFTER)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.iter().map(event_from_row).collect()
}
