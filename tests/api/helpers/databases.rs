//! Fresh databases (`tests/common/databases.rs`), and raw SQL behind the server's back.

pub use crate::common::databases::{
    pg_execute, pg_int, sqlite_execute, sqlite_int, Backend, TestDb,
};
pub use crate::common::names::{unique, unique_email};
use crate::helpers::TestApp;

/// Runs SQL straight against the test database, behind the server's back (used only to
/// prove that `verify` notices tampering).
pub async fn execute_sql(app: &TestApp, sql: &str) {
    match app.backend {
        Backend::Postgres => pg_execute(&app.database_url, sql).await,
        Backend::Sqlite => sqlite_execute(&app.database_url, sql).await,
    }
}

/// Reads one integer straight from the test database, behind the server's back (for what
/// the API does not show, such as the commission rate a partner order keeps).
pub async fn query_int(app: &TestApp, sql: &str) -> i64 {
    match app.backend {
        Backend::Postgres => pg_int(&app.database_url, sql).await,
        Backend::Sqlite => sqlite_int(&app.database_url, sql).await,
    }
}
