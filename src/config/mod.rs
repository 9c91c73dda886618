//! Configuration: `STAMPEDE_*` environment variables over an optional `stampede.toml` over
//! defaults (DESIGN §5). Every limit is named with its unit and validated at start.
//!
//! Each setting is declared once below (name and unit, type, default, rule, doc, secret or
//! not); `declare.rs` derives the struct, `Default`, the environment, the validation and
//! `Debug` from it. Only the checks that span several settings are written by hand.
//! A leaf module: it uses nothing from the rest of the crate.

mod choice;
mod declare;
mod env;
mod error;
pub mod partitions;
mod proxies;
mod secret;
#[cfg(test)]
mod tests;

pub use choice::{Environment, PaymentGateway, PlacementStrategy, Workers};
pub use declare::Setting;
pub use error::ConfigError;
pub use proxies::TrustedProxies;
pub use secret::{redact_url, ConnectionUrl, Secret};

use declare::{settings, Any, Check, Rule};
use std::net::SocketAddr;

settings! {
    /// Stampede's settings. `Debug` shows every one, with secrets and URL credentials
    /// redacted.
    pub struct Config {
        /// `development` or `production`: production refuses to start with anything that
        /// is only fit for development (the payment simulator).
        env: Environment = Environment::Development, Any;
        /// `sqlite://FILE` (embedded default) or `postgres://…`.
        database_url: ConnectionUrl = "sqlite://stampede.db".into(),
            Check(database_url_scheme), secret;
        /// Address the HTTP API listens on.
        http_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), Any;
        /// HS256 signing secret for access tokens, at least 32 bytes. When unset, a random
        /// one is generated once and kept in the database, so every node and CLI command on
        /// that database agrees.
        jwt_secret: Option<Secret> = None, Check(jwt_secret_length), secret;
        /// Lifetime of an access token.
        access_token_ttl_secs: u64 = 900, 1..=86_400;
        /// Lifetime of a refresh token (rotated on use); at least the access token's.
        refresh_token_ttl_secs: u64 = 14 * 24 * 3600, Any;
        /// How long an order's holds wait for payment before the sweeper releases them.
        hold_ttl_secs: u64 = 600, 1..=7 * 86_400;
        /// How often the sweeper releases expired holds and confirms due purchases.
        sweeper_interval_ms: u64 = 1000, 10..=3_600_000;
        /// Orders the sweeper expires, and orders it confirms, per pass.
        sweeper_batch_max: i64 = 500, 1..=10_000;
        /// How long after its last partner order was delivered the sweeper confirms a
        /// purchase the buyer has not confirmed (at most 90 days).
        auto_confirm_after_secs: u64 = 7 * 86_400, 1..=90 * 86_400;
        /// How long a waitlist offer (a held order) waits for payment before it lapses and
        /// passes to the next in line.
        waitlist_offer_ttl_secs: u64 = 300, 1..=7 * 86_400;
        /// How often the waitlist worker looks for offers to make or settle when no event
        /// woke it (a safety net: `stock.changed` and `order.*` events wake it at once).
        waitlist_interval_ms: u64 = 5000, 10..=3_600_000;
        /// Points a confirmed purchase earns, in basis points of its confirmed parts' `payable`
        /// (100 = 1%).
        points_earn_rate_bps: i64 = 100, 0..=10_000;
        /// How long earned (and, by default, granted) points stay valid.
        points_valid_days: u64 = 365, 1..=3650;
        /// How often the points expiry job runs (on the one node holding its lease).
        points_expiry_interval_secs: u64 = 86_400, 1..=7 * 86_400;
        /// Largest number of orders placed in one transaction; 1 is the naive baseline.
        placement_batch_max: usize = 256, 1..=10_000;
        /// How long the writer waits for more orders after the first one of a batch
        /// arrives. 0: a batch is what queued while the last one committed (under load
        /// that is already many; a wait only adds latency, BENCHMARKS.md 2026-12-04).
        placement_linger_ms: u64 = 0, 0..=1000;
        /// Orders queued for the writers (their callers wait for the answer); beyond it,
        /// attempts go to the waiting room.
        placement_queue_depth: usize = 4096, 1..=1_000_000;
        /// `batch` (the placement writer) or `lock`: the seeds' Redis-lock-per-product
        /// approach, kept only as the benchmark baseline; it needs `redis_url`.
        placement_strategy: PlacementStrategy = PlacementStrategy::Batch, Any;
        /// Lock baseline: longest wait for a product lock.
        lock_wait_ms: u64 = 3000, 1..=60_000;
        /// Lock baseline: lease of a product lock.
        lock_lease_ms: u64 = 3000, 1..=60_000;
        /// Lock baseline: pause between tries for a product lock.
        lock_retry_ms: u64 = 5, 1..=1000;
        /// Attempts that may wait in the waiting room (202 + ticket); beyond it, 503.
        /// 0 = none.
        waiting_room_depth: usize = 100_000, 0..=10_000_000;
        /// How long a finished waiting-room ticket's outcome stays readable.
        waiting_room_ticket_ttl_secs: u64 = 300, 1..=86_400;
        /// The lease of the one node that admits waiting-room tickets: another node takes
        /// over within this long of the holder's death.
        waiting_room_lease_ms: u64 = 3000, 500..=60_000;
        /// How often each node reads the waiting room's line (positions, tickets queued on
        /// other nodes).
        waiting_room_poll_ms: u64 = 100, 10..=10_000;
        /// How long a stopping node (SIGTERM) keeps serving while it refuses new orders
        /// (503 + Retry-After) and decides those it accepted.
        shutdown_grace_secs: u64 = 10, 0..=600;
        /// Concurrent placement writers (SQLite serialises writes anyway; PostgreSQL can
        /// overlap batches on different products).
        placement_writers: usize = 1, 1..=64;
        /// Size of the database connection pool.
        db_max_connections: u32 = 16, 1..=1000;
        /// Longest wait for a connection from the pool.
        db_acquire_timeout_ms: u64 = 5000, Any;
        /// Time to produce a response; 408 after it.
        request_timeout_ms: u64 = 10_000, 1..=300_000;
        /// Largest request body; 413 above it.
        body_limit_bytes: usize = 64 * 1024, 1024..=16 * 1024 * 1024;
        /// Most products one `POST /api/v1/products/batch` creates (in one transaction);
        /// beyond it 422 `batch_too_large`, nothing created.
        catalog_batch_max: usize = 1000, 1..=10_000;
        /// Largest body of `POST /api/v1/products/batch` (1,000 products with 200-character
        /// names take about 300 KiB); 413 above it. Every other route keeps
        /// `body_limit_bytes`.
        catalog_batch_body_limit_bytes: usize = 1024 * 1024, 1024..=64 * 1024 * 1024;
        /// How often the event dispatcher polls the outbox when nobody has woken it.
        outbox_poll_ms: u64 = 200, 1..=60_000;
        /// `simulated` (the embedded default: it moves no money, and the server says so at
        /// start) or `portone` (PortOne V2; needs the `portone_*` settings below).
        payment_gateway: PaymentGateway = PaymentGateway::Simulated, Any;
        /// PortOne's REST API.
        portone_api_url: String = "https://api.portone.io".into(), Check(http_url);
        /// PortOne V2 API secret (`Authorization: PortOne …`); required with `portone`.
        portone_api_secret: Option<Secret> = None, Any, secret;
        /// PortOne store id (`store-…`) the browser pays into; payments of another store
        /// are unknown to us. Required with `portone`.
        portone_store_id: Option<String> = None, Any;
        /// PortOne webhook secret (`whsec_…`, Standard Webhooks); required with `portone`.
        portone_webhook_secret: Option<Secret> = None, Check(webhook_secret_shape), secret;
        /// Longest wait for one call to the payment gateway, connection included.
        payment_timeout_ms: u64 = 5000, 100..=60_000;
        /// How often the reconciler resolves checkouts left open (on the node holding its
        /// lease).
        payment_reconcile_interval_secs: u64 = 60, 1..=3600;
        /// How often, without Kafka, the refund retrier asks the gateway again for refunds
        /// that failed (on the node holding its lease); with Kafka its consumer does.
        refund_retry_interval_secs: u64 = 60, 1..=3600;
        /// `redis://…`: nodes share the sold-out gate, the listing cache, rate limits, the
        /// token deny-list and live-update wake-ups through Redis. Unset: all in-process.
        redis_url: Option<ConnectionUrl> = None, Check(redis_url_scheme), secret;
        /// Prepended to every Redis key and channel, so deployments (and tests) can share
        /// one.
        redis_prefix: String = "stampede:".into(), Check(redis_prefix_shape);
        /// Longest wait for one Redis call before falling back to the in-process/database
        /// path.
        redis_timeout_ms: u64 = 250, 1..=10_000;
        /// How often an unreachable Redis is probed for reconnection.
        redis_probe_ms: u64 = 1000, 10..=60_000;
        /// Life of a Redis gate counter not refreshed by a `stock.changed` event.
        gate_ttl_secs: u64 = 30, 1..=86_400;
        /// Life of a cached product page or row (a safety net: events invalidate them).
        cache_ttl_secs: u64 = 60, 1..=86_400;
        /// Cached pages and rows kept in process.
        cache_max_entries: usize = 10_000, 1..=1_000_000;
        /// Requests per second per signed-in user, sustained; 0 disables the limit.
        rate_limit_user_per_sec: u32 = 20, 0..=1_000_000;
        /// Requests a user may make at once above the sustained rate; 1..=10000000 when
        /// the rate is set.
        rate_limit_user_burst: u32 = 40, Any;
        /// Requests per second per client IP address, sustained; 0 disables the limit.
        rate_limit_ip_per_sec: u32 = 2000, 0..=1_000_000;
        /// Requests a client IP address may make at once above the sustained rate;
        /// 1..=10000000 when the rate is set.
        rate_limit_ip_burst: u32 = 4000, Any;
        /// Reverse proxies and load balancers (IP addresses or CIDR ranges,
        /// comma-separated) whose `X-Forwarded-For` names the client; empty trusts none, and
        /// the client is the socket's peer. Every per-IP limit keys on this address.
        trusted_proxies: TrustedProxies = TrustedProxies::default(), Any;
        /// Failed logins per account (by normalised email, known or not) and, separately,
        /// per client IP within `login_failure_window_secs`; beyond it 429
        /// `too_many_attempts` without checking the password.
        login_failures_max: u32 = 10, 1..=1_000_000;
        /// The window of `login_failures_max`, from the first failure it counts.
        login_failure_window_secs: u64 = 900, 1..=86_400;
        /// Sign-up attempts per client IP within `signup_window_secs`; beyond it 429
        /// `too_many_attempts`.
        signups_per_ip_max: u32 = 20, 1..=1_000_000;
        /// The window of `signups_per_ip_max`, from the first attempt it counts.
        signup_window_secs: u64 = 3600, 1..=86_400;
        /// Password hashes (Argon2id, 19 MiB each) computed at once on this node; a login
        /// or sign-up beyond it is refused at once with 503 `overloaded`. 0: twice the
        /// CPU cores.
        password_hash_concurrency: usize = 0, 0..=1024;
        /// Live streams (Server-Sent Events) one user may hold open on this node at once;
        /// the next is refused with 429 `too_many_streams`.
        streams_per_user_max: usize = 5, 1..=1000;
        /// Age at which the server ends a live stream (the client reconnects), so that no
        /// stream holds its slot and its subscriptions forever.
        stream_max_age_secs: u64 = 1800, 1..=86_400;
        /// `host:port[,host:port…]`: the outbox is relayed to Kafka and the once-per-cluster
        /// work runs as consumer groups (DESIGN §4). Unset: all in-process. Needs a build
        /// with the `kafka` feature.
        kafka_brokers: Option<String> = None, Check(kafka_brokers_shape);
        /// Prepended to every topic and consumer group name.
        kafka_topic_prefix: String = "stampede.".into(), Check(kafka_topic_prefix_shape);
        /// Partitions of the topics created at start, per aggregate type; `*` is every
        /// other aggregate (seed 002's numbers).
        kafka_partitions: String = "order=16,product=12,coupon=8,points=8,*=4".into(),
            Check(kafka_partitions_shape);
        /// `on`: `serve` also runs the consumer workers (with `kafka_brokers`); `off`: only
        /// `stampede worker` processes do.
        workers: Workers = Workers::On, Any;
        /// Attempts a consumer makes at one message before it becomes a dead letter.
        consumer_max_attempts: u32 = 3, 1..=100;
        /// A consumer's pause after its first failed attempt; doubled after each one.
        consumer_backoff_ms: u64 = 200, 1..=60_000;
        /// How often the dead-letter job retries open dead letters (on the node holding
        /// its lease).
        dlq_retry_interval_secs: u64 = 300, 1..=86_400;
        /// Retries of one dead letter by that job before it is left to an operator.
        dlq_retry_max: u32 = 5, 0..=1000;
        /// How often the verify job checks every ledger (on the node holding its lease),
        /// like `stampede verify`.
        verify_interval_secs: u64 = 3600, 10..=604_800;
        /// IANA time zone whose calendar days are settlement's business days (DST
        /// included).
        settlement_timezone: String = "Asia/Seoul".into(), Check(settlement_timezone_known);
        /// Local time (`HH:MM`, in `settlement_timezone`) from which the daily job settles
        /// the previous business day.
        settlement_at: String = "04:00".into(), Check(settlement_at_shape);
        /// The relay's lease: another node takes the relay over this long after its holder
        /// stopped renewing it.
        relay_lease_ms: u64 = 3000, 500..=60_000;
        /// How often the relay looks for new outbox events when none woke it.
        relay_poll_ms: u64 = 20, 1..=10_000;
        /// Outbox events the relay publishes per round (it waits for all their acks).
        relay_batch_max: i64 = 1000, 1..=100_000;
    }
}

fn database_url_scheme(url: &ConnectionUrl) -> Result<(), &'static str> {
    let url = url.expose();
    (url.starts_with("sqlite:") || url.starts_with("postgres"))
        .then_some(())
        .ok_or("must start with sqlite:// or postgres://")
}

#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn http_url(url: &String) -> Result<(), &'static str> {
    (url.starts_with("https://") || url.starts_with("http://"))
        .then_some(())
        .ok_or("must start with https:// (or http:// for a local stub)")
}

/// Standard Webhooks secrets are `whsec_` and base64.
fn webhook_secret_shape(secret: &Option<Secret>) -> Result<(), &'static str> {
    match secret {
        Some(secret) if !secret.expose().starts_with("whsec_") || secret.expose().len() < 10 => {
            Err("must be whsec_ followed by the base64 secret")
        }
        _ => Ok(()),
    }
}

fn jwt_secret_length(secret: &Option<Secret>) -> Result<(), &'static str> {
    match secret {
        Some(secret) if secret.expose().len() < 32 => Err("must be at least 32 bytes"),
        _ => Ok(()),
    }
}

fn redis_url_scheme(url: &Option<ConnectionUrl>) -> Result<(), &'static str> {
    match url.as_ref().map(ConnectionUrl::expose) {
        Some(url) if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) => {
            Err("must start with redis:// (TLS is not supported)")
        }
        _ => Ok(()),
    }
}

/// Short, and without whitespace, which Redis key patterns and channel names would split.
#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn redis_prefix_shape(prefix: &String) -> Result<(), &'static str> {
    ((1..=64).contains(&prefix.len()) && !prefix.contains(char::is_whitespace))
        .then_some(())
        .ok_or("must be 1 to 64 bytes without whitespace")
}

fn kafka_brokers_shape(brokers: &Option<String>) -> Result<(), &'static str> {
    let Some(brokers) = brokers else {
        return Ok(());
    };
    let well_formed = brokers.len() <= 1024
        && brokers.split(',').all(|broker| {
            broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
    well_formed
        .then_some(())
        .ok_or("must be host:port[,host:port…]")
}

/// Kafka topic names allow ASCII letters, digits, `.`, `_` and `-`, up to 249 bytes.
#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn kafka_topic_prefix_shape(prefix: &String) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    (prefix.len() <= 64 && prefix.chars().all(allowed))
        .then_some(())
        .ok_or("must be at most 64 of A-Z a-z 0-9 . _ -")
}

#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn kafka_partitions_shape(partitions: &String) -> Result<(), &'static str> {
    crate::config::partitions::TopicPartitions::parse(partitions).map(|_| ())
}

#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn settlement_timezone_known(zone: &String) -> Result<(), &'static str> {
    jiff::tz::TimeZone::get(zone)
        .map(|_| ())
        .map_err(|_| "must be an IANA time zone name, e.g. Asia/Seoul")
}

/// `HH:MM` from 00:00 to 23:59.
#[allow(
    clippy::ptr_arg,
    reason = "a `Check` function takes the field's own type"
)]
fn settlement_at_shape(at: &String) -> Result<(), &'static str> {
    // ASCII first, so the slices below fall on character boundaries.
    let well_formed = at.len() == 5
        && at.as_bytes().get(2) == Some(&b':')
        && at
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 2 || b.is_ascii_digit())
        && at[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && at[3..].parse::<u8>().is_ok_and(|m| m < 60);
    well_formed
        .then_some(())
        .ok_or("must be a local time HH:MM")
}

impl Config {
    /// `password_hash_concurrency`, with 0 resolved to twice the CPU cores.
    pub fn password_hash_permits(&self) -> usize {
        match self.password_hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2),
            set => set,
        }
    }

    /// The gateway's settings are all there, and production takes real money.
    fn validate_payments(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_owned()));
        match self.payment_gateway {
            PaymentGateway::Simulated if self.env == Environment::Production => fail(
                "env is \"production\" but payment_gateway is \"simulated\", which moves no \
                 money: set STAMPEDE_PAYMENT_GATEWAY=portone and its settings",
            ),
            PaymentGateway::Simulated => Ok(()),
            PaymentGateway::Portone => {
                let missing = [
                    (
                        "portone_api_secret",
                        self.portone_api_secret.as_ref().map(Secret::expose),
                    ),
                    ("portone_store_id", self.portone_store_id.as_deref()),
                    (
                        "portone_webhook_secret",
                        self.portone_webhook_secret.as_ref().map(Secret::expose),
                    ),
                ];
                match missing
                    .iter()
                    .find(|(_, value)| value.is_none_or(str::is_empty))
                {
                    Some((name, _)) => Err(ConfigError(format!(
                        "payment_gateway is \"portone\": {name} must be set"
                    ))),
                    None => Ok(()),
                }
            }
        }
    }

    /// Defaults, then `stampede.toml` (or the file in `STAMPEDE_CONFIG`) if present, then
    /// the environment; validated.
    pub fn load() -> Result<Config, ConfigError> {
        let path = std::env::var("STAMPEDE_CONFIG").unwrap_or_else(|_| "stampede.toml".into());
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError(format!("{path}: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(ConfigError(format!("{path}: {e}"))),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Each setting's own rule, then the rules that tie settings together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_each()?;
        self.validate_together()
    }

    fn validate_together(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &str| ok.then_some(()).ok_or(ConfigError(what.to_owned()));
        check(
            self.refresh_token_ttl_secs >= self.access_token_ttl_secs,
            "refresh_token_ttl_secs must be >= access_token_ttl_secs",
        )?;
        let strategy_ready = match self.placement_strategy {
            PlacementStrategy::Batch => true,
            PlacementStrategy::Lock => self.redis_url.is_some(),
        };
        check(
            strategy_ready,
            "placement_strategy must be \"batch\", or \"lock\" with redis_url set",
        )?;
        self.validate_payments()?;
        check(
            self.kafka_brokers.is_none() || cfg!(feature = "kafka"),
            "kafka_brokers is set, but this build has no Kafka support: build with \
             `--features kafka`",
        )?;
        // A burst only means something under a rate; 0 turns the limit (and it) off.
        for (rate, burst, burst_name) in [
            (
                self.rate_limit_user_per_sec,
                self.rate_limit_user_burst,
                "rate_limit_user_burst",
            ),
            (
                self.rate_limit_ip_per_sec,
                self.rate_limit_ip_burst,
                "rate_limit_ip_burst",
            ),
        ] {
            if rate != 0 {
                (1..=10_000_000).check(burst_name, &burst)?;
            }
        }
        Ok(())
    }
}
