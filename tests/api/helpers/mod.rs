//! The test harness: every test gets its own server on port 0 against its own fresh
//! database, talks to it over HTTP only, and tears both down afterwards, even when the
//! test panics. `backend_tests!` runs each test once on SQLite and once on PostgreSQL;
//! `redis_tests!` does the same with the servers on the run's Redis.
//!
//! One file per concern:
//! - [`server`] — running a test: database, server, teardown; further nodes;
//! - [`services`] — the rule for PostgreSQL and Redis (`tests/common/services.rs`) and the
//!   run's Redis as tests use it;
//! - [`databases`] — fresh databases (`tests/common/databases.rs`) and raw SQL;
//! - [`client`] — requests and replies; [`assertions`] — reading replies;
//! - [`accounts`], [`catalog`], [`orders`], [`fulfilment`] — fixtures over the API;
//! - [`sse`] — event streams; [`polling`] — `eventually`, `all_at_once`;
//! - [`portone_stub`] — a PortOne-compatible gateway for the payment tests, and
//!   `portone_tests!`.
//!
//! Everything is re-exported here: tests `use crate::helpers::*;`.

/// Defines a module `$name` with two tests, `sqlite` and `postgres`, each running the body
/// against a fresh server. An optional `config = |c| …` adjusts the `Config` first; an
/// optional `needs = [Redis]` names services the test needs beyond its backend, under the
/// rule of [`services`] (skipped or failed before the body runs, never inside it).
///
/// ```ignore
/// backend_tests!(pays, |app| async move { … });
/// backend_tests!(expires, config = |c| { c.hold_ttl_secs = 1 }, |app| async move { … });
/// backend_tests!(private_redis, needs = [Redis], |app| async move { … });
/// ```
macro_rules! backend_tests {
    ($name:ident, |$app:ident| $body:expr) => {
        backend_tests!(@variants $name, [], |_config, _services| {}, |$app| $body);
    };
    ($name:ident, config = |$cfg:ident| $tweak:expr, |$app:ident| $body:expr) => {
        backend_tests!(@variants $name, [], |$cfg, _services| $tweak, |$app| $body);
    };
    ($name:ident, needs = [$($need:ident),+], |$app:ident| $body:expr) => {
        backend_tests!(
            @variants $name,
            [$($crate::helpers::Service::$need),+],
            |_config, _services| {},
            |$app| $body
        );
    };
    (@variants $name:ident, [$($need:expr),*], |$cfg:ident, $svc:ident| $tweak:expr,
     |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::helpers::run_on(
                    $crate::helpers::Backend::Sqlite,
                    &[$($need),*],
                    |$cfg: &mut ::stampede::config::Config,
                     $svc: &$crate::helpers::Available| {
                        $tweak;
                    },
                    |$app: $crate::helpers::TestApp| $body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::helpers::run_on(
                    $crate::helpers::Backend::Postgres,
                    &[$($need),*],
                    |$cfg: &mut ::stampede::config::Config,
                     $svc: &$crate::helpers::Available| {
                        $tweak;
                    },
                    |$app: $crate::helpers::TestApp| $body,
                )
                .await;
            }
        }
    };
}

/// `backend_tests!` for tests of the Redis scale-out mode: both variants need Redis (the
/// rule of [`services`]), and the server runs on the run's Redis under a key prefix of its
/// own (see [`use_shared_redis`]) before `config` adjusts anything.
macro_rules! redis_tests {
    ($name:ident, |$app:ident| $body:expr) => {
        redis_tests!($name, config = |_config| {}, |$app| $body);
    };
    ($name:ident, config = |$cfg:ident| $tweak:expr, |$app:ident| $body:expr) => {
        backend_tests!(
            @variants $name,
            [$crate::helpers::Service::Redis],
            |$cfg, services| {
                $crate::helpers::use_shared_redis($cfg, services);
                $tweak
            },
            |$app| $body
        );
    };
}

mod accounts;
mod assertions;
mod catalog;
mod client;
mod command;
mod databases;
mod fulfilment;
mod orders;
mod polling;
#[macro_use]
mod portone_stub;
mod server;
mod services;
mod sse;

pub use accounts::PASSWORD;
pub use assertions::*;
pub use catalog::Stock;
pub use client::{read_reply, Reply};
pub use databases::*;
pub use orders::order_body;
pub use polling::*;
pub use portone_stub::*;
pub use server::*;
pub use services::*;
pub use sse::*;
