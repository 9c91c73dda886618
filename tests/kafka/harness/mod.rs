//! Running a Kafka test: the services rule (PostgreSQL and a Tansu binary), a private
//! broker, then the API tests' harness (`tests/api/helpers`: a fresh database and an
//! in-process node, here on that broker), the body, and teardown whatever happened — the
//! node stops before the broker dies, and the broker dies even when the body panicked.
//!
//! - [`broker`] — the private broker, its pause and resume; [`link`] — the network to it,
//!   cut off and restored;
//! - [`topics`] — reading topics back, producing, a group's committed offsets;
//! - [`outbox`] — the outbox rows and the checks that the topics carry them;
//! - [`nodes`] — nodes as child processes of the binary, and metrics;
//! - [`shop`] — paying, confirming and points over the API.

pub mod broker;
pub mod link;
pub mod nodes;
pub mod outbox;
pub mod shop;
pub mod topics;

use crate::helpers::{available, run_on, Backend, Service, TestApp};
pub use broker::PrivateBroker;
pub use nodes::{metrics, sample, NodeProcess};
pub use outbox::{
    assert_published_exactly_once, assert_published_none_lost, outbox_events, read_until_published,
    OutboxEvent, PREFIX,
};
pub use shop::{confirm_ok, earning, pay_ok, points_balance, wait_for_balance};
use stampede::config::Config;
use std::future::Future;
use std::sync::Arc;
pub use topics::{committed_offset, Received, TestProducer, TopicReader};

/// A consumer's pause after a failed attempt in these tests (the default is 200 ms): a
/// poison message is dead-lettered in a blink.
pub const CONSUMER_BACKOFF_MS: u64 = 20;

/// What a Kafka test's body gets.
pub struct KafkaTest {
    /// The in-process node, on the private broker unless the test's `configure` turned
    /// Kafka off for it.
    pub app: TestApp,
    pub broker: Arc<PrivateBroker>,
}

impl KafkaTest {
    /// `STAMPEDE_*` settings for a child-process node of the same deployment: the same
    /// database, the private broker, the tests' short consumer backoff, no rate limits
    /// (one test client is one IP and a few users, far faster than people).
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STAMPEDE_DATABASE_URL", self.app.database_url.clone()),
            ("STAMPEDE_KAFKA_BROKERS", self.broker.bootstrap()),
            (
                "STAMPEDE_CONSUMER_BACKOFF_MS",
                CONSUMER_BACKOFF_MS.to_string(),
            ),
            ("STAMPEDE_RATE_LIMIT_USER_PER_SEC", "0".to_owned()),
            ("STAMPEDE_RATE_LIMIT_IP_PER_SEC", "0".to_owned()),
            // Several nodes and the tests running beside them share one PostgreSQL.
            ("STAMPEDE_DB_MAX_CONNECTIONS", "4".to_owned()),
        ]
    }

    /// One metric of the in-process node (see [`sample`]); fails when it is absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = metrics(&self.app.client, &self.app.root)
            .await
            .expect("the node's /metrics");
        sample(&text, name, labels)
            .unwrap_or_else(|| panic!("no metric {name} {labels:?} in:\n{text}"))
    }

    /// `SELECT COUNT(*) …` (or any one BIGINT) on the test database, `$1…` bound to `args`.
    pub async fn count(&self, sql: &str, args: &[i64]) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.app.database_url)
            .await
            .expect("connect to the test database");
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        let value = query
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql} {args:?}: {e}"));
        let _ = conn.close().await;
        value
    }
}

/// Runs `body` on PostgreSQL with a private broker and an in-process node on it. The node
/// has the tests' short consumer backoff; `configure` adjusts the rest (it may also set
/// `kafka_brokers = None` for a node that stays off Kafka).
pub async fn run<C, F, Fut>(configure: C, body: F)
where
    C: FnOnce(&mut Config),
    F: FnOnce(KafkaTest) -> Fut,
    Fut: Future<Output = ()>,
{
    // The one place a Kafka test is skipped, before anything starts (the API harness asks
    // again for PostgreSQL, with the same answer).
    let Some(services) = available(&[Service::Postgres, Service::Kafka]).await else {
        return;
    };
    let broker = Arc::new(PrivateBroker::start(services.url(Service::Kafka)).await);
    let bootstrap = broker.bootstrap();
    let for_body = broker.clone();
    run_on(
        Backend::Postgres,
        &[Service::Kafka],
        |config, _| {
            config.kafka_brokers = Some(bootstrap);
            config.consumer_backoff_ms = CONSUMER_BACKOFF_MS;
            configure(config);
        },
        |app| {
            body(KafkaTest {
                app,
                broker: for_body,
            })
        },
    )
    .await;
    drop(broker);
}

/// Runs `body` with a private broker only: the harness's own checks need no database.
pub async fn with_broker<F, Fut>(body: F)
where
    F: FnOnce(Arc<PrivateBroker>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(services) = available(&[Service::Kafka]).await else {
        return;
    };
    let broker = Arc::new(PrivateBroker::start(services.url(Service::Kafka)).await);
    body(broker.clone()).await;
}
