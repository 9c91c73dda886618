//! Running a store test: the services rule, a fresh database, the store opened and
//! migrated, the body, then the database dropped whatever happened.

use crate::common::databases::{Backend, TestDb};
use crate::common::services::available;
use futures_util::FutureExt;
use stampede::clock::{Clock, SystemClock};
use stampede::store::{PoolOptions, Store};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Defines a module `$name` with a test per backend, `sqlite` and `postgres`, each running
/// the body with a fresh `store: Arc<dyn Store>`; with `|store, url|` the body also gets
/// the database's URL, to read or change rows behind the store's back
/// ([`crate::fixtures::sql_execute`]). With `postgres_only` it defines only `postgres`; say
/// why the test cannot run on SQLite in a comment beside it.
///
/// With `unmigrated` it defines both, and the body gets a store that is not migrated yet
/// and the database's URL: a test of a migration applies the ones before it
/// (`Store::migrate_to`), writes rows the old way on a side connection, then migrates.
///
/// ```ignore
/// store_tests!(places, |store| async move { … });
/// store_tests!(tampered, |store, url| async move { … });
/// store_tests!(row_locks, postgres_only, |store, url| async move { … });
/// store_tests!(backfill, unmigrated, |store, url| async move { … });
/// ```
macro_rules! store_tests {
    ($name:ident, |$store:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::harness::with_store(
                    $crate::common::databases::Backend::Sqlite,
                    |$store, _url| $body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::harness::with_store(
                    $crate::common::databases::Backend::Postgres,
                    |$store, _url| $body,
                )
                .await;
            }
        }
    };
    ($name:ident, unmigrated, |$store:ident, $url:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::harness::with_unmigrated_store(
                    $crate::common::databases::Backend::Sqlite,
                    |$store, $url| $body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::harness::with_unmigrated_store(
                    $crate::common::databases::Backend::Postgres,
                    |$store, $url| $body,
                )
                .await;
            }
        }
    };
    ($name:ident, |$store:ident, $url:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::harness::with_store(
                    $crate::common::databases::Backend::Sqlite,
                    |$store, $url| $body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::harness::with_store(
                    $crate::common::databases::Backend::Postgres,
                    |$store, $url| $body,
                )
                .await;
            }
        }
    };
    ($name:ident, postgres_only, |$store:ident, $url:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::harness::with_store(
                    $crate::common::databases::Backend::Postgres,
                    |$store, $url| $body,
                )
                .await;
            }
        }
    };
}

fn options() -> PoolOptions {
    PoolOptions {
        max_connections: 16,
        acquire_timeout: Duration::from_secs(30),
    }
}

/// The one place that opens a store: when the store API moves, this is the line to adapt.
async fn connect(url: &str) -> Arc<dyn Store> {
    stampede::store::open::connect(url, &options())
        .await
        .expect("connect")
}

/// Opens and migrates a store. Migrates twice at once (two nodes starting together: the
/// second waits and then finds nothing to do), then once more.
pub async fn open(url: &str) -> Arc<dyn Store> {
    let store = connect(url).await;
    let now = SystemClock.now();
    let (a, b) = tokio::join!(store.migrate(now), store.migrate(now));
    a.expect("migrate");
    b.expect("migrate concurrently");
    store.migrate(now).await.expect("migrate again");
    store
}

/// Applies the services rule (the one place a test is skipped), creates the database,
/// opens the store, runs `body` on a task of its own, then closes the store and drops the
/// database even when `body` panicked, and only then re-raises the panic.
pub async fn with_store<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run(backend, true, body).await;
}

/// [`with_store`] with a store that is opened but not migrated: the body migrates it.
pub async fn with_unmigrated_store<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run(backend, false, body).await;
}

async fn run<F, Fut>(backend: Backend, migrated: bool, body: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(services) = available(backend.services()).await else {
        return;
    };
    let db = TestDb::create(backend, &services).await;
    let opened = async {
        if migrated {
            open(db.url()).await
        } else {
            connect(db.url()).await
        }
    };
    let store = match AssertUnwindSafe(opened).catch_unwind().await {
        Ok(store) => store,
        Err(panic) => {
            db.destroy().await;
            std::panic::resume_unwind(panic);
        }
    };
    let outcome = tokio::spawn(body(store.clone(), db.url().to_owned())).await;
    store.close().await;
    db.destroy().await;
    match outcome {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the test's task did not finish: {e}"),
    }
}
