//! The one Redis connection of a node, and its health.
//!
//! Redis is an accelerator here, never the truth: every call has a short timeout, and the
//! first failure marks the link unhealthy (one log line, a metric). While it is unhealthy no
//! call is even attempted — each concern falls back to its in-process or database path — and
//! a background task probes for Redis every `redis_probe_ms`. When the probe succeeds, the
//! concerns' [`Reconnect`] hooks run first (a node that was away may have missed events, so
//! what it can no longer trust is dropped) and only then is the link healthy again.

use crate::metrics::Metrics;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// What a concern does after Redis comes back (or first comes up), before anyone uses it.
#[async_trait]
pub trait Reconnect: Send + Sync {
    async fn reconnected(&self, link: &RedisLink);
}

/// Receives pub/sub messages on one channel (a name below the key prefix).
pub trait Listener: Send + Sync {
    fn channel(&self) -> &'static str;
    fn message(&self, payload: &[u8]);
}

pub struct RedisLink {
    client: Client,
    conn: RwLock<Option<MultiplexedConnection>>,
    /// The connection answered its last call; reconnect hooks may use it.
    connected: AtomicBool,
    /// Connected and reconciled by the hooks: everyone may use it.
    healthy: AtomicBool,
    prefix: String,
    timeout: Duration,
    probe: Duration,
    metrics: Arc<Metrics>,
    /// Counts successful subscriptions, so start-up can wait for the first one.
    subscribed: watch::Sender<u64>,
}

impl RedisLink {
    /// Parses the URL (a bad one is a configuration error); does not connect yet.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        probe: Duration,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<RedisLink> {
        let client =
            Client::open(url).map_err(|e| anyhow::anyhow!("redis_url: {e} ({})", redact(url)))?;
        metrics.redis_up.set(0);
        Ok(RedisLink {
            client,
            conn: RwLock::new(None),
            connected: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            prefix: prefix.to_owned(),
            timeout,
            probe,
            metrics,
            subscribed: watch::channel(0).0,
        })
    }

    /// `suffix` under this deployment's key prefix.
    pub fn key(&self, suffix: impl std::fmt::Display) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Runs one Redis operation within the timeout. `None` when the link is unhealthy or the
    /// call fails; the caller then takes its fallback path.
    pub async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_healthy() {
            return None;
        }
        self.exec(what, op).await
    }

    /// [`Self::call`] for reconnect hooks: allowed before the link is declared healthy.
    pub async fn exec<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.connected.load(Ordering::Acquire) {
            return None;
        }
        let conn = self.conn.read().ok()?.clone()?;
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.fail(what, &e);
                None
            }
            Err(_) => {
                self.fail(what, &"timed out");
                None
            }
        }
    }

    /// Marks the link unhealthy; logs only on the transition, so an outage is one line.
    pub fn fail(&self, what: &'static str, error: &dyn std::fmt::Display) {
        self.metrics.redis_errors.inc();
        self.connected.store(false, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            self.metrics.redis_up.set(0);
            tracing::warn!(operation = what, error = %error, "redis unavailable; using the in-process and database paths");
        }
    }

    async fn open(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }

    /// One connection attempt; on success the hooks run and the link becomes healthy.
    async fn try_connect(&self, hooks: &[Arc<dyn Reconnect>]) -> bool {
        let opened = tokio::time::timeout(self.connect_timeout(), self.open()).await;
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis probe failed");
                return false;
            }
            Err(_) => return false,
        };
        if let Ok(mut slot) = self.conn.write() {
            *slot = Some(conn);
        }
        // The hooks reconcile Redis with what this node may have missed before anyone else
        // uses it: they run on `exec`, which needs only the connection.
        self.connected.store(true, Ordering::Release);
        for hook in hooks {
            hook.reconnected(self).await;
        }
        if !self.connected.load(Ordering::Acquire) {
            return false;
        }
        self.healthy.store(true, Ordering::Release);
        self.metrics.redis_up.set(1);
        tracing::info!("redis connected");
        true
    }

    /// The first connection, at start-up; `false` leaves the probing to [`Self::supervise`].
    pub async fn connect_once(&self, hooks: &[Arc<dyn Reconnect>]) -> bool {
        let connected = self.try_connect(hooks).await;
        if !connected {
            tracing::warn!("redis unavailable at start; using the in-process and database paths");
        }
        connected
    }

    /// How long connecting may take.
    pub fn connect_timeout(&self) -> Duration {
        self.timeout * 4
    }

    pub fn subscriptions(&self) -> watch::Receiver<u64> {
        self.subscribed.subscribe()
    }

    /// Keeps the link up until `stop`: probes while unhealthy.
    pub async fn supervise(
        self: Arc<Self>,
        hooks: Vec<Arc<dyn Reconnect>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if !self.is_healthy() {
                self.try_connect(&hooks).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.probe) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Subscribes the listeners' channels while Redis is up. A dropped subscription marks
    /// the link unhealthy, which is how an idle node notices an outage at once.
    pub async fn listen(
        self: Arc<Self>,
        listeners: Vec<Arc<dyn Listener>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if self.is_healthy() {
                if let Err(e) = self.subscribe_until_closed(&listeners, &mut stop).await {
                    self.fail("subscribe", &e);
                }
                if *stop.borrow() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.probe) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn subscribe_until_closed(
        &self,
        listeners: &[Arc<dyn Listener>],
        stop: &mut watch::Receiver<bool>,
    ) -> RedisResult<()> {
        let mut pubsub =
            tokio::time::timeout(self.connect_timeout(), self.client.get_async_pubsub())
                .await
                .map_err(|_| timed_out())??;
        for listener in listeners {
            pubsub.subscribe(self.key(listener.channel())).await?;
        }
        self.subscribed.send_modify(|n| *n += 1);
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        let channel = message.get_channel_name();
                        if let Some(l) = listeners.iter().find(|l| self.key(l.channel()) == channel) {
                            l.message(message.get_payload_bytes());
                        }
                    }
                    None => return Err(closed()),
                },
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// Deletes every key matching `pattern` (below the prefix). Used only by reconnect hooks,
    /// so a full SCAN is acceptable.
    pub async fn delete_matching(&self, pattern: &str) {
        let pattern = self.key(pattern);
        let mut cursor: u64 = 0;
        while let Some((next, keys)) = self.scan_step(cursor, &pattern).await {
            if !keys.is_empty() {
                let unlinked = self
                    .exec("unlink", |mut c| async move {
                        redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await;
                if unlinked.is_none() {
                    return;
                }
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }

    /// Every key matching `pattern` (below the prefix) with its value.
    pub async fn scan_values(&self, pattern: &str) -> Vec<(String, String)> {
        let pattern = self.key(pattern);
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        while let Some((next, keys)) = self.scan_step(cursor, &pattern).await {
            if !keys.is_empty() {
                let query = keys.clone();
                let values = self
                    .exec("mget", |mut c| async move {
                        redis::cmd("MGET")
                            .arg(query)
                            .query_async::<Vec<Option<String>>>(&mut c)
                            .await
                    })
                    .await
                    .unwrap_or_default();
                found.extend(
                    keys.into_iter()
                        .zip(values)
                        .filter_map(|(k, v)| Some((k, v?))),
                );
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found
    }

    async fn scan_step(&self, cursor: u64, pattern: &str) -> Option<(u64, Vec<String>)> {
        self.exec("scan", |mut c| async move {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH_KEYS)
                .query_async::<(u64, Vec<String>)>(&mut c)
                .await
        })
        .await
    }
}

/// Keys examined per SCAN step.
const SCAN_BATCH_KEYS: u64 = 1000;

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis subscribe timed out",
    ))
}

fn closed() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "redis subscription closed",
    ))
}

fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}
