//! The PostgreSQL store and its pool. A leaf: it imports nothing from the rest of the
//! backend.

use crate::store::{PoolOptions, StoreResult};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Opens the pool and checks that one connection works. Does not migrate.
    pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A read-only transaction whose statements all see one snapshot (REPEATABLE READ): a page
/// and its total, or balances and their ledgers, agree even while writes commit between
/// the statements.
pub(super) async fn snapshot(pool: &PgPool) -> StoreResult<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?)
}
