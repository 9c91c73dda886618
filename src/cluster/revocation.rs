//! Sharing the access-token deny-list between nodes.
//!
//! The outbox already carries every logout (`session.revoked`) to every node at its poll
//! interval. With Redis a logout is also written as a key that lives as long as the token
//! would have, and published, so other nodes refuse the token at once; a node that starts
//! or reconnects loads the live keys. The per-request check stays an in-memory lookup in
//! [`crate::auth::DenyList`]: no Redis round trip per request.

use super::redis::{Listener, Reconnect, RedisLink};
use crate::auth::AuthService;
use crate::clock::SharedClock;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// One implementation per mode, chosen once in `cluster::Cluster::build`.
#[async_trait]
pub trait Revocations: Send + Sync {
    /// Tells the other nodes at once that `jti` is revoked until `expires_at`.
    async fn announce(&self, jti: &str, expires_at: Timestamp);
}

/// Embedded mode: the outbox is the only path, and it is enough.
pub struct LocalRevocations;

#[async_trait]
impl Revocations for LocalRevocations {
    async fn announce(&self, _jti: &str, _expires_at: Timestamp) {}
}

const CHANNEL: &str = "revoked";

pub struct RedisRevocations {
    link: Arc<RedisLink>,
    auth: Arc<AuthService>,
    clock: SharedClock,
}

impl RedisRevocations {
    pub fn new(
        link: Arc<RedisLink>,
        auth: Arc<AuthService>,
        clock: SharedClock,
    ) -> RedisRevocations {
        RedisRevocations { link, auth, clock }
    }

    fn insert(&self, jti: &str, expires_ms: &str) {
        if let Ok(ms) = expires_ms.trim().parse::<i64>() {
            self.auth
                .denylist
                .insert(jti.to_owned(), Timestamp::from_millis(ms));
        }
    }
}

#[async_trait]
impl Revocations for RedisRevocations {
    async fn announce(&self, jti: &str, expires_at: Timestamp) {
        let remaining_ms = expires_at.millis() - self.clock.now().millis();
        if remaining_ms <= 0 {
            return;
        }
        let key = self.link.key(format_args!("revoked:{jti}"));
        let channel = self.link.key(CHANNEL);
        let message = format!("{jti} {}", expires_at.millis());
        let expires = expires_at.millis();
        self.link
            .call("revoke", |mut c| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(key)
                    .arg(expires)
                    .arg("PX")
                    .arg(remaining_ms)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }
}

impl Listener for RedisRevocations {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn message(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        if let Some((jti, expires_ms)) = text.split_once(' ') {
            self.insert(jti, expires_ms);
        }
    }
}

#[async_trait]
impl Reconnect for RedisRevocations {
    async fn reconnected(&self, link: &RedisLink) {
        let prefix = link.key("revoked:");
        for (key, expires_ms) in link.scan_values("revoked:*").await {
            if let Some(jti) = key.strip_prefix(&prefix) {
                self.insert(jti, &expires_ms);
            }
        }
    }
}
