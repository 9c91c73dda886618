//! The seeds' approach, kept as the baseline benchmarks beat: a Redis lock per product
//! (`SET key token NX PX lease`, wait and retry until a deadline, as Redisson's `tryLock`
//! does) around a read-check-write transaction of one order. Selected with
//! `STAMPEDE_PLACEMENT_STRATEGY=lock`; never the default. Correct (the database still
//! refuses to oversell), but every order for a hot product waits its turn for the lock.

use crate::app::error::PlaceError;
use crate::clock::SharedClock;
use crate::domain::allocation::OrderRequest;
use crate::metrics::Metrics;
use crate::store::{PlaceOutcome, Store, StoreError};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Deletes the lock only if this attempt still owns it (its lease may have expired and
/// another attempt may hold it now).
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"#;

#[derive(Debug, Clone, Copy)]
pub struct LockConfig {
    /// Longest an attempt waits for a product's lock (Redisson's `waitTime`).
    pub wait: Duration,
    /// Expiry of a held lock, in case its holder dies (Redisson's `leaseTime`).
    pub lease: Duration,
    /// Pause between tries while the lock is taken.
    pub retry: Duration,
    pub hold_ttl_secs: u64,
}

pub struct LockPlacement {
    store: Arc<dyn Store>,
    clock: SharedClock,
    redis: MultiplexedConnection,
    release: redis::Script,
    prefix: String,
    config: LockConfig,
    metrics: Arc<Metrics>,
}

impl LockPlacement {
    pub async fn connect(
        store: Arc<dyn Store>,
        clock: SharedClock,
        redis_url: &str,
        prefix: &str,
        config: LockConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<LockPlacement> {
        let client = redis::Client::open(redis_url)?;
        let redis = client.get_multiplexed_async_connection().await?;
        Ok(LockPlacement {
            store,
            clock,
            redis,
            release: redis::Script::new(RELEASE),
            prefix: prefix.to_owned(),
            config,
            metrics,
        })
    }

    /// Locks the order's products in ascending id order (so two orders cannot deadlock),
    /// places it alone in its own transaction, and unlocks.
    pub async fn place(&self, request: OrderRequest) -> Result<PlaceOutcome, PlaceError> {
        let products: BTreeSet<i64> = request.lines.iter().map(|l| l.product_id).collect();
        let token = crate::auth::random_token(12);
        let mut held = Vec::with_capacity(products.len());
        let mut result = Err(PlaceError::LockTimeout);
        for product_id in products {
            let key = format!("{}lock:product:{product_id}", self.prefix);
            match self.acquire(&key, &token).await {
                Ok(true) => held.push(key),
                Ok(false) => break,
                Err(e) => {
                    result = Err(PlaceError::Store(StoreError::Unavailable(e.to_string())));
                    break;
                }
            }
        }
        if held.len() == request.lines.len() {
            let now = self.clock.now();
            let pay_by = now.plus_secs(self.config.hold_ttl_secs);
            result = self
                .store
                .place_batch(std::slice::from_ref(&request), pay_by, now)
                .await
                .and_then(|mut r| r.outcomes.pop().ok_or(StoreError::NotFound))
                .map_err(PlaceError::Store);
        }
        for key in held.iter().rev() {
            let mut redis = self.redis.clone();
            let released: redis::RedisResult<i64> = self
                .release
                .key(key)
                .arg(&token)
                .invoke_async(&mut redis)
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release a product lock; it expires with its lease");
            }
        }
        result
    }

    /// Tries `SET NX PX` until it succeeds or the wait runs out.
    async fn acquire(&self, key: &str, token: &str) -> redis::RedisResult<bool> {
        let deadline = Instant::now() + self.config.wait;
        let lease_ms = self.config.lease.as_millis() as u64;
        let mut redis = self.redis.clone();
        loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .query_async(&mut redis)
                .await?;
            if set.is_some() {
                return Ok(true);
            }
            self.metrics.lock_retries.inc();
            if Instant::now() + self.config.retry > deadline {
                return Ok(false);
            }
            tokio::time::sleep(self.config.retry).await;
        }
    }
}
