//! Live updates between nodes. Every node tails the shared outbox table, so a change made
//! on node B reaches a buyer streaming from node A without Redis too — at A's poll interval.
//! With Redis a node that committed publishes a tiny "outbox advanced" notice and every
//! node's dispatcher wakes on it at once. The payload still comes from the outbox table:
//! one delivery path, no duplicates, and if Redis is gone polling carries on.

use super::redis::{Listener, RedisLink};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::Notify;

/// One implementation per mode, chosen once in `Cluster::build`.
#[async_trait]
pub trait Fanout: Send + Sync {
    /// This node committed events up to `last_event_id`: wake the others.
    async fn announce(&self, last_event_id: i64);
}

/// Embedded mode: one node, woken by its own commits.
pub struct LocalFanout;

#[async_trait]
impl Fanout for LocalFanout {
    async fn announce(&self, _last_event_id: i64) {}
}

const CHANNEL: &str = "outbox";

pub struct RedisFanout {
    link: Arc<RedisLink>,
    /// This node's dispatcher wakes on it.
    wake: Arc<Notify>,
}

impl RedisFanout {
    pub fn new(link: Arc<RedisLink>, wake: Arc<Notify>) -> RedisFanout {
        RedisFanout { link, wake }
    }
}

#[async_trait]
impl Fanout for RedisFanout {
    async fn announce(&self, last_event_id: i64) {
        let channel = self.link.key(CHANNEL);
        self.link
            .call("announce", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(last_event_id)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }
}

impl Listener for RedisFanout {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn message(&self, _payload: &[u8]) {
        self.wake.notify_one();
    }
}
