//! PostgreSQL backend, the store of the scale-out mode (DESIGN §2). Several API nodes share
//! one database, so every guard here must hold across processes: row locks taken in
//! ascending id order, `UNIQUE` constraints with `ON CONFLICT`, `CHECK`s as the last line of
//! defence, and advisory locks only where no row can carry the lock (migrations, the outbox
//! horizon). Everything PostgreSQL-specific lives under this folder: its `migrations/` and
//! every statement that is not in `store/sql.rs` (which both dialects run as they are).
//!
//! The files are named like those of `store/sqlite/`, one per area:
//!
//! - `conn.rs` — the store and its pool (a leaf every other file imports);
//! - `accounts.rs`, `catalog.rs`, `waitlist.rs`, `coupons.rs`, `leases.rs`, `audit.rs`,
//!   `outbox.rs` (the event writer and its horizon lock too), `relay.rs`,
//!   `dead_letters.rs` — one store trait each;
//! - `stock.rs` — where stock is held, committed, released and returned: the stock
//!   accounts (locked in ascending product id) and their ledger;
//! - `orders.rs` — reading orders and moving them through their lifecycle, with
//!   `order_reads.rs` loading whole orders;
//! - `fulfilment.rs` — sellers' steps on partner orders and the partner's listing, with
//!   `returns.rs` taking back a part after the purchase was confirmed;
//! - `place.rs` and `place_write.rs` — order placement, the hot path (DESIGN §3);
//! - `benefits.rs` — the coupon and points an order holds;
//! - `points/` — loyalty points.

mod accounts;
mod audit;
mod bench;
mod benefits;
mod catalog;
mod catalog_batch;
mod checkouts;
mod conn;
mod coupons;
mod dead_letters;
mod fulfilment;
mod leases;
mod operations;
mod order_reads;
mod orders;
mod outbox;
mod place;
mod place_write;
mod points;
mod relay;
mod returns;
mod settlement;
mod stock;
mod waiting_room;
mod waitlist;

pub use conn::PgStore;

use crate::domain::Timestamp;
use crate::store::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgQueryResult};

/// Migrations in the order they apply; a version is never edited once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_waitlist.sql")),
    (3, include_str!("migrations/0003_coupons.sql")),
    (4, include_str!("migrations/0004_points.sql")),
    (5, include_str!("migrations/0005_order_benefits.sql")),
    (6, include_str!("migrations/0006_event_stream.sql")),
    (7, include_str!("migrations/0007_fulfilment.sql")),
    (8, include_str!("migrations/0008_settlement.sql")),
    (9, include_str!("migrations/0009_partial_cancel.sql")),
    (10, include_str!("migrations/0010_settlement_ledger.sql")),
    (11, include_str!("migrations/0011_payments_gateway.sql")),
    (12, include_str!("migrations/0012_refund_retries.sql")),
    (13, include_str!("migrations/0013_waiting_room.sql")),
    (14, include_str!("migrations/0014_nodes.sql")),
];

/// Advisory lock key serialising `migrate` across nodes that start at the same moment
/// (ASCII "stampmig").
const MIGRATION_LOCK_KEY: i64 = 0x7374_616d_706d_6967;

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip_all, fields(last = last))]
    async fn migrate_to(&self, now: Timestamp, last: i64) -> StoreResult<()> {
        for (version, sql) in MIGRATIONS.iter().take_while(|(v, _)| *v <= last) {
            apply_migration(&self.pool, *version, sql, now).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies one migration unless it is recorded, in its own transaction. The advisory lock is
/// taken before anything else, so a second node waits here and then sees the version as
/// applied instead of racing on `CREATE TABLE`.
async fn apply_migration(
    pool: &PgPool,
    version: i64,
    sql: &'static str,
    now: Timestamp,
) -> StoreResult<()> {
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
        .bind(now.millis())
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
