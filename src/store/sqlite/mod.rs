//! SQLite backend, the embedded default (DESIGN §2): one file in WAL mode, one writer at a
//! time. Everything SQLite-specific lives under this folder: its `migrations/` and every
//! statement that is not in `store/sql.rs` (which both dialects run as they are).
//!
//! The files are named like those of `store/postgres/`, one per area:
//!
//! - `conn.rs` — the store, its reader pool and write lane, the write transaction (a leaf
//!   every other file imports);
//! - `accounts.rs`, `catalog.rs`, `waitlist.rs`, `coupons.rs`, `leases.rs`, `audit.rs`,
//!   `outbox.rs` (the event writer too), `relay.rs`, `dead_letters.rs` — one store trait
//!   each;
//! - `stock.rs` — where stock is held, committed, released and returned: the stock
//!   accounts and their ledger;
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

pub use conn::SqliteStore;

use crate::domain::Timestamp;
use crate::store::{Store, StoreError, StoreResult};
use async_trait::async_trait;

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

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// The pending migrations up to `last` in one write transaction: the write lock keeps
    /// a second process out until they are recorded.
    #[tracing::instrument(skip_all, fields(last = last))]
    async fn migrate_to(&self, now: Timestamp, last: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, sql) in MIGRATIONS.iter().take_while(|(v, _)| *v <= last) {
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
