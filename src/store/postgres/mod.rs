//! PostgreSQL backend, the store of the scale-out mode (DESIGN §2). Several API nodes share
//! one database, so every guard here must hold across processes: row locks taken in
//! ascending id order, `UNIQUE` constraints with `ON CONFLICT`, `CHECK`s as the last line of
//! defence, and advisory locks only where no row can carry the lock (migrations, the outbox
//! horizon). All PostgreSQL-specific SQL lives under this folder.
//!
//! Trait methods are thin: each calls a function returning [`StoreResult`] with `?` on raw
//! sqlx errors, and passes the result through [`classify`] once, at the boundary, so a pool
//! timeout can never leak out as a plain database error.

mod audit;
mod auth;
mod benefits;
mod catalog;
mod coupons;
mod orders;
mod outbox;
mod place;
mod points;
mod stock;
mod waitlist;

use super::{PoolOptions, Store, StoreError, StoreResult};
use crate::domain::Timestamp;
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::Row;

/// Migrations in the order they apply; a version is never edited once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_waitlist.sql")),
    (3, include_str!("migrations/0003_coupons.sql")),
    (4, include_str!("migrations/0004_points.sql")),
    (5, include_str!("migrations/0005_order_benefits.sql")),
];

/// Advisory lock key serialising `migrate` across nodes that start at the same moment
/// (ASCII "stampmig").
const MIGRATION_LOCK_KEY: i64 = 0x7374_616d_706d_6967;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Opens the pool and checks that one connection works. Does not migrate.
    pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| classify(e.into()))?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> StoreResult<()> {
        for (version, sql) in MIGRATIONS {
            apply_migration(&self.pool, *version, sql)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| classify(e.into()))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies one migration unless it is recorded, in its own transaction. The advisory lock is
/// taken before anything else, so a second node waits here and then sees the version as
/// applied instead of racing on `CREATE TABLE`.
async fn apply_migration(pool: &PgPool, version: i64, sql: &'static str) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    run_script(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)")
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
    if applied {
        return Ok(tx.commit().await?);
    }
    run_script(&mut tx, sql)
        .await
        .map_err(|e| StoreError::Migration(format!("version {version}: {e}")))?;
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(crate::clock::Clock::now(&crate::clock::SystemClock).millis())
        .execute(&mut *tx)
        .await?;
    tracing::info!(version, "applied migration");
    Ok(tx.commit().await?)
}

/// Runs a multi-statement script (simple protocol, no parameters). Called through
/// `Executor::execute`, whose boxed future is `Send` for the concrete connection lifetime;
/// the generic `RawSql::execute` future trips rustc's higher-ranked `Send` check inside
/// `async_trait`.
async fn run_script(
    conn: &mut PgConnection,
    sql: &'static str,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::Executor::execute(conn, sqlx::raw_sql(sql)).await
}

/// SQLSTATE of `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Maps a raw database error to the store's vocabulary: the caller may retry `Unavailable`,
/// must show `Conflict` to the user, and treats the rest as bugs or outages.
pub(super) fn classify(error: StoreError) -> StoreError {
    let StoreError::Database(error) = error else {
        return error;
    };
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code == UNIQUE_VIOLATION && db.constraint() == Some("users_email_key") {
                StoreError::Conflict("email_taken")
            } else if code.starts_with("08") || code.starts_with("57P") {
                // Connection exceptions and server shutdown: an outage, not a bug.
                StoreError::Unavailable(error.to_string())
            } else {
                StoreError::Database(error)
            }
        }
        _ => StoreError::Database(error),
    }
}

/// Reads an epoch-milliseconds column.
pub(super) fn ts(row: &PgRow, column: &str) -> Result<Timestamp, sqlx::Error> {
    row.try_get::<i64, _>(column).map(Timestamp::from_millis)
}
