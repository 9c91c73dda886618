//! The services a test needs, under the one rule of `tests/common/services.rs`, and the
//! run's Redis as the scale-out tests use it.

pub use crate::common::services::{available, Available, Service};
use crate::helpers::{unique, TestApp};
use stampede::config::Config;

/// Points the server at the run's Redis under a key prefix of its own, probing every
/// 100 ms. `redis_tests!` calls it, after the harness has found Redis available.
pub fn use_shared_redis(config: &mut Config, services: &Available) {
    config.redis_url = Some(services.url(Service::Redis).to_owned().into());
    config.redis_prefix = format!("{}:", unique("t"));
    config.redis_probe_ms = 100;
}

/// A raw connection to the test's Redis, to look behind the server's back.
pub async fn raw_redis(app: &TestApp) -> redis::aio::MultiplexedConnection {
    let url = app
        .state
        .config
        .redis_url
        .as_ref()
        .expect("raw_redis is for redis_tests!, whose server is on Redis")
        .expose();
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}
