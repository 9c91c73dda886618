//! SQLite backend, the embedded default: one file in WAL mode with `synchronous=FULL`
//! (an acknowledged order survives a power cut; batching pays for the fsync).
//!
//! SQLite has one writer at a time, so writes go through a pool of exactly one connection
//! and every write transaction starts with `BEGIN IMMEDIATE` (it takes the write lock up
//! front instead of failing to upgrade later). Reads use a separate pool; WAL lets them run
//! beside the writer.

mod audit;
mod auth;
mod benefits;
mod catalog;
mod coupons;
mod leases;
mod orders;
mod outbox;
mod place;
mod points;
mod waitlist;

use super::{PoolOptions, Store, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_waitlist.sql")),
    (3, include_str!("migrations/0003_coupons.sql")),
    (4, include_str!("migrations/0004_points.sql")),
    (5, include_str!("migrations/0005_order_benefits.sql")),
];
/// How long a connection waits for another process holding the write lock (e.g. a CLI
/// command run beside the server).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(SqliteStore { reader, writer })
    }

    async fn write_tx(&self) -> StoreResult<Tx> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each($n))`: SQLite has no array
/// parameters and this keeps the statement text fixed (and cached).
fn json_ids(ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<i64> = ids.into_iter().collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

async fn write_event(
    tx: &mut Tx,
    event: &crate::domain::events::NewEvent,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.aggregate_type)
    .bind(event.aggregate_id)
    .bind(event.event_type)
    .bind(&event.payload)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self, now: crate::domain::Timestamp) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, sql) in MIGRATIONS {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            // A plain string runs as a multi-statement script (no parameters).
            sqlx::Executor::execute(&mut *tx, *sql)
                .await
                .map_err(|e| StoreError::Migration(format!("sqlite {version}: {e}")))?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Applies one movement to a stock account and appends its ledger row. The CHECK
/// constraints (`0 <= held <= on_hand`) refuse anything that would oversell or go negative.
async fn move_stock(
    tx: &mut Tx,
    product_id: i64,
    kind: crate::domain::order::MovementKind,
    quantity: i64,
    order_id: Option<i64>,
    memo: Option<&str>,
    now: i64,
) -> StoreResult<super::StockLevels> {
    let (d_on_hand, d_held) = kind.effect(quantity);
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE stock SET on_hand = on_hand + $2, held = held + $3
         WHERE product_id = $1 RETURNING on_hand, held",
    )
    .bind(product_id)
    .bind(d_on_hand)
    .bind(d_held)
    .fetch_optional(&mut **tx)
    .await?;
    let (on_hand, held) = row.ok_or(StoreError::NotFound)?;
    let levels = super::StockLevels {
        product_id,
        on_hand,
        held,
    };
    insert_movement(tx, &levels, kind, quantity, order_id, memo, now).await?;
    Ok(levels)
}

/// Appends one ledger row; `levels` are the account's balances once it applied.
async fn insert_movement(
    tx: &mut Tx,
    levels: &super::StockLevels,
    kind: crate::domain::order::MovementKind,
    quantity: i64,
    order_id: Option<i64>,
    memo: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO stock_movements
             (product_id, kind, quantity, order_id, memo, on_hand_after, held_after, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(levels.product_id)
    .bind(kind.as_str())
    .bind(quantity)
    .bind(order_id)
    .bind(memo)
    .bind(levels.on_hand)
    .bind(levels.held)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
