//! The SQLite store's connections and the helpers every other file of this backend uses.
//! A leaf: it imports nothing from the rest of the backend.
//!
//! SQLite has one writer at a time, so writes go through a pool of exactly one connection
//! and every write transaction starts with `BEGIN IMMEDIATE` (it takes the write lock up
//! front instead of failing to upgrade later). Reads use a separate pool; WAL lets them run
//! beside the writer.

use crate::store::{PoolOptions, StoreResult};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a connection waits for another process holding the write lock (e.g. a CLI
/// command run beside the server).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: &str = "-65536";
/// WAL pages (4 KiB) between automatic checkpoints.
const WAL_CHECKPOINT_PAGES: &str = "4000";

pub struct SqliteStore {
    pub(super) reader: SqlitePool,
    pub(super) writer: SqlitePool,
}

/// A write transaction, holding SQLite's one write lock until it ends.
pub(super) type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    /// One file in WAL mode with `synchronous=FULL`: an acknowledged order survives a power
    /// cut, and batching pays for the fsync.
    pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (a multi-row INSERT that may fail halfway keeps one) and
            // temporary tables in memory, not in temp files: nothing durable lives there.
            .pragma("temp_store", "memory");
        // The writer's page cache holds the hot B-tree pages of a busy drop (the default
        // 2 MiB re-reads them from the OS), and its WAL is checkpointed every 16 MiB rather
        // than every 4 MiB, so a page rewritten by many batches is copied back once. Every
        // commit still waits for its fsync (`synchronous=FULL`).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(
                connect
                    .clone()
                    .pragma("cache_size", WRITER_CACHE_KIB)
                    .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES),
            )
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(SqliteStore { reader, writer })
    }

    pub(super) async fn write_tx(&self) -> StoreResult<Tx> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A read transaction on `reader` whose statements all see one snapshot (WAL keeps the one
/// its first read took until it ends): a page and its total agree even while the writer
/// commits between them. Dropping it ends it.
pub(super) async fn snapshot(reader: &SqlitePool) -> StoreResult<Tx> {
    Ok(reader.begin().await?)
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each($n))`: SQLite has no array
/// parameters and this keeps the statement text fixed (and cached).
pub(super) fn json_ids(ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<i64> = ids.into_iter().collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// Rows as a JSON array of tuples, for `INSERT … SELECT … FROM json_each($n)` and lookups
/// by several keys at once.
pub(super) fn to_json<T: Serialize + ?Sized>(rows: &T) -> String {
    // Vectors of numbers and strings always serialise.
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
}
