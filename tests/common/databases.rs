//! A fresh database per test, on SQLite (a new file) or PostgreSQL (a new database on the
//! server of `STAMPEDE_TEST_PG_URL`, dropped afterwards).

use super::names::unique;
use super::services::{redacted, Available, Service};
use futures_util::FutureExt;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// What a test on this backend needs besides itself (see `services`).
    pub fn services(self) -> &'static [Service] {
        match self {
            Backend::Sqlite => &[],
            Backend::Postgres => &[Service::Postgres],
        }
    }
}

pub enum TestDb {
    Sqlite {
        path: PathBuf,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    /// A new empty database. `services` must hold what [`Backend::services`] names.
    pub async fn create(backend: Backend, services: &Available) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique("stampede_test")));
                let url = format!("sqlite://{}", path.display());
                TestDb::Sqlite { path, url }
            }
            Backend::Postgres => {
                let admin_url = services.url(Service::Postgres).to_owned();
                // Identifiers cannot be bound as parameters; `name` is made of letters,
                // digits and underscores only.
                let name = unique("stampede_test");
                pg_execute(&admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
                let mut url =
                    reqwest::Url::parse(&admin_url).expect("STAMPEDE_TEST_PG_URL is not a URL");
                url.set_path(&format!("/{name}"));
                TestDb::Postgres {
                    admin_url,
                    name,
                    url: url.to_string(),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    /// Best effort: a leftover database is not a test failure, but it is reported.
    pub async fn destroy(self) {
        match self {
            TestDb::Sqlite { path, .. } => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(&file);
                }
            }
            TestDb::Postgres {
                admin_url, name, ..
            } => {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let dropped = AssertUnwindSafe(pg_execute(&admin_url, &sql))
                    .catch_unwind()
                    .await;
                if dropped.is_err() {
                    // Uncaptured, like a skip: a passing test's `eprintln!` is never shown.
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: could not drop test database {name}"
                    );
                }
            }
        }
    }
}

/// Runs `sql` (one or more statements, no parameters) on a connection of its own.
pub async fn pg_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {}: {e}", redacted(url)));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Runs `sql` on a connection of its own to the SQLite file at `url`.
pub async fn sqlite_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// The one integer `sql` selects, read on a connection of its own to PostgreSQL at `url`.
pub async fn pg_int(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {}: {e}", redacted(url)));
    let value = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
    value
}

/// The one integer `sql` selects, read on a connection of its own to the SQLite file at
/// `url`.
pub async fn sqlite_int(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    let value = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
    value
}
