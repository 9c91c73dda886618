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

/// A migrated SQLite store in a file of its own under the temp directory, for the unit
/// tests of the use cases; [`TempSqlite::close`] closes it and removes its files.
#[cfg(test)]
pub(crate) struct TempSqlite {
    pub store: Arc<dyn Store>,
    path: std::path::PathBuf,
}

#[cfg(test)]
impl TempSqlite {
    pub async fn open(now: crate::domain::Timestamp) -> TempSqlite {
        let path = std::env::temp_dir().join(format!(
            "stampede-unit-{}-{}.db",
            std::process::id(),
            rand::random::<u64>()
        ));
        let options = PoolOptions {
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_secs(10),
        };
        let store = connect(&format!("sqlite://{}", path.display()), &options)
            .await
            .unwrap();
        store.migrate(now).await.unwrap();
        TempSqlite { store, path }
    }

    pub async fn close(self) {
        self.store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}
