//! The SQLite store's connections and the helpers every other file of this backend uses.
//! A leaf: it imports nothing from the rest of the backend.
//!
//! SQLite has one writer at a time, so writes go through one connection taken in turn
//! ([`WriteLane`]) and every write transaction starts with `BEGIN IMMEDIATE` (it takes the
//! write lock up front instead of failing to upgrade later). Reads use a pool; WAL lets them
//! run beside the writer.

use crate::store::{PoolOptions, StoreError, StoreResult};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Sqlite, SqlitePool, Transaction};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// How long a connection waits for another process holding the write lock (e.g. a CLI
/// command run beside the server).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: &str = "-65536";
/// WAL pages (4 KiB) between automatic checkpoints.
const WAL_CHECKPOINT_PAGES: &str = "4000";

pub struct SqliteStore {
    pub(super) reader: SqlitePool,
    pub(super) writer: WriteLane,
}

/// A read transaction on the reader pool ([`snapshot`]).
pub(super) type ReadTx = Transaction<'static, Sqlite>;

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
        let writer = connect
            .clone()
            .pragma("cache_size", WRITER_CACHE_KIB)
            .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .connect()
            .await?;
        let writer = WriteLane::new(writer, options.acquire_timeout);
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(SqliteStore { reader, writer })
    }

    pub(super) async fn write_tx(&self) -> StoreResult<WriteTx> {
        self.writer.begin().await
    }
}

/// SQLite's one write connection, taken in turn. A lock around one connection, not a pool
/// of one: handing it on is an unlock that wakes the next writer, where sqlx's pool first
/// tests a returned connection on its worker thread from a task of its own — two more
/// hand-offs per transaction, each waiting for a core on a busy machine, and a drop's
/// batches come one after another through this lane.
pub(super) struct WriteLane {
    lane: Arc<Mutex<Option<Held>>>,
    acquire_timeout: Duration,
}

/// The connection while the lane is open.
struct Held {
    conn: SqliteConnection,
    /// A transaction was begun and neither committed nor rolled back (a failed statement,
    /// a refusal, a dropped future): whoever holds the lane next rolls it back first.
    open: bool,
}

impl WriteLane {
    fn new(conn: SqliteConnection, acquire_timeout: Duration) -> Self {
        let held = Held { conn, open: false };
        WriteLane {
            lane: Arc::new(Mutex::new(Some(held))),
            acquire_timeout,
        }
    }

    /// Waits for the lane (at most the pool's acquire timeout, like any connection) and
    /// begins a write transaction on it.
    pub(super) async fn begin(&self) -> StoreResult<WriteTx> {
        let mut held = self.take().await?;
        held.open = true;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut held.conn)
            .await?;
        Ok(WriteTx {
            held,
            lane: self.lane.clone(),
        })
    }

    /// One statement on the write connection, outside any transaction (it commits on its
    /// own, as SQLite's autocommit does).
    pub(super) async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> StoreResult<sqlx::sqlite::SqliteQueryResult> {
        let mut held = self.take().await?;
        Ok(query.execute(&mut held.conn).await?)
    }

    /// The connection, once the lane is free and what its last holder left open is
    /// rolled back.
    async fn take(&self) -> StoreResult<OwnedMappedMutexGuard<Option<Held>, Held>> {
        let guard = tokio::time::timeout(self.acquire_timeout, self.lane.clone().lock_owned())
            .await
            .map_err(|_| StoreError::from(sqlx::Error::PoolTimedOut))?;
        let mut held = OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| StoreError::from(sqlx::Error::PoolClosed))?;
        roll_back_unfinished(&mut held).await;
        Ok(held)
    }

    /// Closes the connection once the transaction in progress, if any, has ended; later
    /// transactions fail as on a closed pool.
    pub(super) async fn close(&self) {
        let taken = self.lane.lock().await.take();
        if let Some(mut held) = taken {
            roll_back_unfinished(&mut held).await;
            let _ = held.conn.close().await;
        }
    }
}

/// Rolls back what a previous holder left open. "No transaction is active" (a `BEGIN` that
/// never ran) leaves nothing to undo; any other failure shows again at the next `BEGIN`.
async fn roll_back_unfinished(held: &mut Held) {
    if held.open {
        let _ = sqlx::query("ROLLBACK").execute(&mut held.conn).await;
        held.open = false;
    }
}

/// A write transaction, holding SQLite's one write lock until it ends: [`WriteTx::commit`]
/// it, or roll it back (explicitly, or by dropping it).
pub(super) struct WriteTx {
    held: OwnedMappedMutexGuard<Option<Held>, Held>,
    lane: Arc<Mutex<Option<Held>>>,
}

impl WriteTx {
    pub(super) async fn commit(mut self) -> StoreResult<()> {
        sqlx::query("COMMIT").execute(&mut self.held.conn).await?;
        self.held.open = false;
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> StoreResult<()> {
        sqlx::query("ROLLBACK").execute(&mut self.held.conn).await?;
        self.held.open = false;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.held.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.held.conn
    }
}

/// Dropped unfinished: the lane is released now and the transaction rolled back by
/// whoever takes it next — a task of its own, so the write lock is not kept while no other
/// writer comes (another process may be waiting for it).
impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.held.open {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lane = self.lane.clone();
            runtime.spawn(async move {
                if let Some(held) = lane.lock().await.as_mut() {
                    roll_back_unfinished(held).await;
                }
            });
        }
    }
}

/// A read transaction on `reader` whose statements all see one snapshot (WAL keeps the one
/// its first read took until it ends): a page and its total agree even while the writer
/// commits between them. Dropping it ends it.
pub(super) async fn snapshot(reader: &SqlitePool) -> StoreResult<ReadTx> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store on a file of its own, removed when dropped.
    struct Scratch {
        store: SqliteStore,
        path: std::path::PathBuf,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }

    async fn scratch(acquire_timeout: Duration) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "stampede-lane-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let options = PoolOptions {
            max_connections: 2,
            acquire_timeout,
        };
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::connect(&url, &options).await.unwrap();
        store
            .writer
            .execute(sqlx::query("CREATE TABLE t (v INTEGER)"))
            .await
            .unwrap();
        Scratch { store, path }
    }

    async fn rows(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&store.reader)
            .await
            .unwrap()
    }

    /// One row inserted by the open transaction `tx`.
    async fn insert_one(tx: &mut WriteTx) {
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_committed_transaction_is_kept_and_the_lane_passes_on() {
        let s = scratch(Duration::from_secs(5)).await;
        for _ in 0..3 {
            let mut tx = s.store.write_tx().await.unwrap();
            insert_one(&mut tx).await;
            tx.commit().await.unwrap();
        }
        // A statement on its own commits on its own.
        s.store
            .writer
            .execute(sqlx::query("INSERT INTO t VALUES (1)"))
            .await
            .unwrap();
        assert_eq!(rows(&s.store).await, 4);
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_undone_and_frees_the_write_lock_for_another_process() {
        let s = scratch(Duration::from_secs(5)).await;
        let mut tx = s.store.write_tx().await.unwrap();
        insert_one(&mut tx).await;
        drop(tx);
        // Another connection (a CLI command beside the server) that does not wait for
        // the lock: it gets it once the dropped transaction is rolled back, with no other
        // write coming through the lane.
        let mut other = SqliteConnectOptions::from_str(&format!("sqlite://{}", s.path.display()))
            .unwrap()
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .unwrap();
        let mut took_lock = false;
        for _ in 0..200 {
            if sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .is_ok()
            {
                took_lock = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            took_lock,
            "the dropped transaction kept SQLite's write lock"
        );
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        assert_eq!(rows(&s.store).await, 0, "the dropped insert was kept");
        // The lane goes on as usual.
        let mut tx = s.store.write_tx().await.unwrap();
        insert_one(&mut tx).await;
        tx.commit().await.unwrap();
        assert_eq!(rows(&s.store).await, 1);
    }

    #[tokio::test]
    async fn a_writer_that_waits_past_the_acquire_timeout_is_told_unavailable() {
        let s = scratch(Duration::from_millis(100)).await;
        let held = s.store.write_tx().await.unwrap();
        let waited = s.store.write_tx().await;
        assert!(matches!(waited, Err(StoreError::Unavailable(_))));
        held.rollback().await.unwrap();
        s.store.write_tx().await.unwrap().commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_lane_refuses_new_transactions() {
        let s = scratch(Duration::from_secs(5)).await;
        s.store.writer.close().await;
        assert!(matches!(
            s.store.write_tx().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
