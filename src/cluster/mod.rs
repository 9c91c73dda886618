//! What nodes share (DESIGN §2): hot counters, the listing cache, rate limits, the token
//! deny-list and the fan-out of live updates. Each concern is a small trait with an
//! in-process implementation (embedded default) and a Redis one (`STAMPEDE_REDIS_URL`),
//! chosen once here; the rest of the code holds the [`Cluster`] and never asks which mode
//! it runs in.
//!
//! Redis only ever accelerates: the database stays the truth, and when Redis goes away each
//! concern falls back to its in-process or database path (see [`redis`]).

pub mod cache;
pub mod coupon_gate;
pub mod fanout;
pub mod gate;
pub mod login_attempts;
pub mod rate_limit;
pub mod redis;
pub mod revocation;

use crate::auth::AuthService;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use cache::{Listing, LocalCache, RedisCache};
use coupon_gate::CouponGate;
use fanout::{Fanout, LocalFanout, RedisFanout};
use gate::{Gate, LocalGate, RedisGate};
use login_attempts::{AttemptPolicy, Attempts, LocalAttempts, RedisAttempts};
use rate_limit::{Limiter, LocalLimiter, Rate, RedisLimiter};
use revocation::{LocalRevocations, RedisRevocations, Revocations};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use self::redis::RedisLink;

#[derive(Clone)]
pub struct Cluster {
    pub gate: Gate,
    /// The in-process gate, always fed from events (the Redis gate's fallback too).
    pub local_gate: Arc<LocalGate>,
    pub listing: Listing,
    pub limiter: Limiter,
    /// Failed logins per account and per address, sign-ups per address.
    pub attempts: Attempts,
    pub revocations: Arc<dyn Revocations>,
    pub fanout: Arc<dyn Fanout>,
    /// First-come coupon claims: sold-out flags, and the Redis gate when configured.
    pub coupons: Arc<CouponGate>,
    /// Woken when another node announces that the outbox advanced.
    pub remote_wake: Arc<Notify>,
    redis: Option<RedisParts>,
}

#[derive(Clone)]
struct RedisParts {
    link: Arc<RedisLink>,
    hooks: Vec<Arc<dyn redis::Reconnect>>,
    listeners: Vec<Arc<dyn redis::Listener>>,
}

impl Cluster {
    /// Builds the in-process or the Redis implementation of every concern. Does not connect.
    pub fn build(
        config: &Config,
        metrics: Arc<Metrics>,
        auth: Arc<AuthService>,
        clock: SharedClock,
    ) -> anyhow::Result<Cluster> {
        let local_gate = Arc::new(LocalGate::default());
        let remote_wake = Arc::new(Notify::new());
        let rates = (
            Rate::new(config.rate_limit_user_per_sec, config.rate_limit_user_burst),
            Rate::new(config.rate_limit_ip_per_sec, config.rate_limit_ip_burst),
        );
        let attempts = |counter: Arc<dyn login_attempts::AttemptCounter>| {
            Attempts::new(
                counter,
                AttemptPolicy {
                    max: config.login_failures_max.into(),
                    window: Duration::from_secs(config.login_failure_window_secs),
                },
                AttemptPolicy {
                    max: config.signups_per_ip_max.into(),
                    window: Duration::from_secs(config.signup_window_secs),
                },
                metrics.clone(),
            )
        };
        let Some(url) = &config.redis_url else {
            let cache = LocalCache::new(
                Duration::from_secs(config.cache_ttl_secs),
                config.cache_max_entries,
            );
            let coupons = Arc::new(CouponGate::new(None, metrics.clone()));
            return Ok(Cluster {
                gate: Gate::new(local_gate.clone(), metrics.clone()),
                local_gate,
                listing: Listing::new(Arc::new(cache), metrics.clone()),
                attempts: attempts(Arc::new(LocalAttempts::default())),
                limiter: Limiter::new(Arc::new(LocalLimiter::default()), rates.0, rates.1, metrics),
                revocations: Arc::new(LocalRevocations),
                fanout: Arc::new(LocalFanout),
                coupons,
                remote_wake,
                redis: None,
            });
        };
        let link = Arc::new(RedisLink::new(
            url.expose(),
            &config.redis_prefix,
            Duration::from_millis(config.redis_timeout_ms),
            Duration::from_millis(config.redis_probe_ms),
            metrics.clone(),
        )?);
        let gate = Arc::new(RedisGate::new(
            link.clone(),
            local_gate.clone(),
            config.gate_ttl_secs,
        ));
        let cache = Arc::new(RedisCache::new(link.clone(), config.cache_ttl_secs));
        let revocations = Arc::new(RedisRevocations::new(link.clone(), auth, clock));
        let fanout = Arc::new(RedisFanout::new(link.clone(), remote_wake.clone()));
        let coupons = Arc::new(CouponGate::new(Some(link.clone()), metrics.clone()));
        Ok(Cluster {
            gate: Gate::new(gate.clone(), metrics.clone()),
            local_gate,
            listing: Listing::new(cache.clone(), metrics.clone()),
            attempts: attempts(Arc::new(RedisAttempts::new(link.clone()))),
            limiter: Limiter::new(
                Arc::new(RedisLimiter::new(link.clone())),
                rates.0,
                rates.1,
                metrics,
            ),
            revocations: revocations.clone(),
            fanout: fanout.clone(),
            coupons,
            remote_wake,
            redis: Some(RedisParts {
                link,
                hooks: vec![gate, cache, revocations.clone()],
                listeners: vec![revocations, fanout],
            }),
        })
    }

    /// Connects to Redis (once, waiting at most a few timeouts; a node whose Redis is down
    /// starts anyway on its fallbacks) and spawns the tasks that keep the link up and
    /// listen for the other nodes. Nothing to do in embedded mode.
    pub async fn start(&self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let Some(parts) = &self.redis else {
            return Vec::new();
        };
        let link = parts.link.clone();
        let mut subscribed = link.subscriptions();
        let connected = link.connect_once(&parts.hooks).await;
        let tasks = vec![
            tokio::spawn(link.clone().listen(parts.listeners.clone(), stop.clone())),
            tokio::spawn(link.clone().supervise(parts.hooks.clone(), stop)),
        ];
        if connected {
            // Wait for the subscription so that other nodes wake this one from its first
            // request on (bounded: Redis may fail right now).
            let _ =
                tokio::time::timeout(link.connect_timeout(), subscribed.wait_for(|n| *n > 0)).await;
        }
        tasks
    }
}
