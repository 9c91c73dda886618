//! The store's one error type, and the one place driver errors are sorted into it.
//!
//! Every `?` on a `sqlx::Error` goes through [`From`] below, so a pool timeout or a dropped
//! connection is [`StoreError::Unavailable`] (HTTP 503, retry) wherever it happens, and
//! everything else the driver reports is [`StoreError::Database`] (HTTP 500). A duplicate
//! that is the caller's mistake rather than a bug is mapped to a [`StoreError::Conflict`]
//! at its statement, with [`conflict_on_unique`].

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database is unreachable or timed out; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_outage(&error) {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Database(error)
        }
    }
}

/// An exhausted or closed pool, or a connection that broke: the database is not there
/// right now, which is not a bug in the statement.
fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // SQLSTATE classes 08 (connection exception) and 57P (server shutting down or
        // restarting) are PostgreSQL's; SQLite's codes are plain numbers, never these.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        // `WorkerCrashed` (only SQLite's driver raises it: its connection thread died) has
        // always been reported as a database error, and stays one.
        _ => false,
    }
}

/// Whether `error` is a unique violation of `constraint`. PostgreSQL names the constraint;
/// SQLite does not, so there any unique violation counts: use this only on statements
/// whose table has no other unique index the statement could break.
pub(crate) fn violates_unique(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint().is_none_or(|c| c == constraint))
}

/// `Conflict(conflict)` for a unique violation of `constraint` (see [`violates_unique`]),
/// the usual classification for anything else.
pub(crate) fn conflict_on_unique(
    constraint: &'static str,
    conflict: &'static str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| {
        if violates_unique(&error, constraint) {
            StoreError::Conflict(conflict)
        } else {
            error.into()
        }
    }
}
