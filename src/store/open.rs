//! Opening a store: the backend follows from the URL scheme (DESIGN §2). The one file of
//! `store` that names both backends, so that nothing they import depends on it.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{PoolOptions, Store, StoreError, StoreResult};
use std::sync::Arc;

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`). Does not migrate.
pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(url, options).await?))
    } else {
        Err(StoreError::Unavailable(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}
