//! Configuration: `STAMPEDE_*` environment variables over an optional `stampede.toml` over
//! defaults (DESIGN §5). Every limit is named with its unit and validated at start.

use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://FILE` (embedded default) or `postgres://…`.
    pub database_url: String,
    pub http_addr: SocketAddr,
    /// HS256 signing secret for access tokens. When unset, a random one is generated once
    /// and kept in the database, so every node and CLI command on that database agrees.
    pub jwt_secret: Option<String>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// How long an order's holds wait for payment before the sweeper releases them.
    pub hold_ttl_secs: u64,
    pub sweeper_interval_ms: u64,
    /// Orders the sweeper expires, and orders it confirms, per pass.
    pub sweeper_batch_max: i64,
    /// How long after payment the sweeper confirms a purchase the buyer has not confirmed.
    pub auto_confirm_after_secs: u64,
    /// How long a waitlist offer (a held order) waits for payment before it lapses and
    /// passes to the next in line.
    pub waitlist_offer_ttl_secs: u64,
    /// How often the waitlist worker looks for offers to make or settle when no event woke
    /// it (a safety net: `stock.changed` and `order.*` events wake it at once).
    pub waitlist_interval_ms: u64,
    /// Points a confirmed purchase earns, in basis points of its `payable` (100 = 1%).
    pub points_earn_rate_bps: i64,
    /// How long earned (and, by default, granted) points stay valid.
    pub points_valid_days: u64,
    /// How often the points expiry job runs (on the one node holding its lease).
    pub points_expiry_interval_secs: u64,
    /// Largest number of orders placed in one transaction; 1 is the naive baseline.
    pub placement_batch_max: usize,
    /// How long the writer waits for more orders after the first one of a batch arrives.
    pub placement_linger_ms: u64,
    /// Orders queued for the writers (their callers wait for the answer); beyond it,
    /// attempts go to the waiting room.
    pub placement_queue_depth: usize,
    /// `batch` (the placement writer) or `lock`: the seeds' Redis-lock-per-product approach,
    /// kept only as the benchmark baseline; it needs `redis_url`.
    pub placement_strategy: String,
    /// Lock baseline: longest wait for a product lock, its lease, and the pause between tries.
    pub lock_wait_ms: u64,
    pub lock_lease_ms: u64,
    pub lock_retry_ms: u64,
    /// Attempts that may wait in the waiting room (202 + ticket); beyond it, 503. 0 = none.
    pub waiting_room_depth: usize,
    /// How long a finished waiting-room ticket's outcome stays readable.
    pub waiting_room_ticket_ttl_secs: u64,
    /// Concurrent placement writers (SQLite serialises writes anyway; PostgreSQL can overlap
    /// batches on different products).
    pub placement_writers: usize,
    pub db_max_connections: u32,
    pub db_acquire_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub body_limit_bytes: usize,
    /// How often the event dispatcher polls the outbox when nobody has woken it.
    pub outbox_poll_ms: u64,
    /// `simulated` is the only gateway shipped; it is named so nobody mistakes it for money.
    pub payment_gateway: String,
    /// `redis://…`: nodes share the sold-out gate, the listing cache, rate limits, the
    /// token deny-list and live-update wake-ups through Redis. Unset: all in-process.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key and channel, so deployments (and tests) can share one.
    pub redis_prefix: String,
    /// Longest wait for one Redis call before falling back to the in-process/database path.
    pub redis_timeout_ms: u64,
    /// How often an unreachable Redis is probed for reconnection.
    pub redis_probe_ms: u64,
    /// Life of a Redis gate counter not refreshed by a `stock.changed` event.
    pub gate_ttl_secs: u64,
    /// Life of a cached product page or row (a safety net: events invalidate them).
    pub cache_ttl_secs: u64,
    /// Cached pages and rows kept in process.
    pub cache_max_entries: usize,
    /// Requests per second per signed-in user, sustained; 0 disables the limit.
    pub rate_limit_user_per_sec: u32,
    /// Requests a user may make at once above the sustained rate.
    pub rate_limit_user_burst: u32,
    /// Requests per second per client IP address, sustained; 0 disables the limit.
    pub rate_limit_ip_per_sec: u32,
    pub rate_limit_ip_burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://stampede.db".into(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            hold_ttl_secs: 600,
            sweeper_interval_ms: 1000,
            sweeper_batch_max: 500,
            auto_confirm_after_secs: 7 * 86_400,
            waitlist_offer_ttl_secs: 300,
            waitlist_interval_ms: 5000,
            points_earn_rate_bps: 100,
            points_valid_days: 365,
            points_expiry_interval_secs: 86_400,
            placement_batch_max: 256,
            placement_linger_ms: 1,
            placement_queue_depth: 4096,
            placement_strategy: "batch".into(),
            lock_wait_ms: 3000,
            lock_lease_ms: 3000,
            lock_retry_ms: 5,
            waiting_room_depth: 100_000,
            waiting_room_ticket_ttl_secs: 300,
            placement_writers: 1,
            db_max_connections: 16,
            db_acquire_timeout_ms: 5000,
            request_timeout_ms: 10_000,
            body_limit_bytes: 64 * 1024,
            outbox_poll_ms: 200,
            payment_gateway: "simulated".into(),
            redis_url: None,
            redis_prefix: "stampede:".into(),
            redis_timeout_ms: 250,
            redis_probe_ms: 1000,
            gate_ttl_secs: 30,
            cache_ttl_secs: 60,
            cache_max_entries: 10_000,
            rate_limit_user_per_sec: 20,
            rate_limit_user_burst: 40,
            rate_limit_ip_per_sec: 2000,
            rate_limit_ip_burst: 4000,
        }
    }
}

impl std::fmt::Debug for Config {
    /// Secrets and credentials in URLs never reach the logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("http_addr", &self.http_addr)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("hold_ttl_secs", &self.hold_ttl_secs)
            .field("sweeper_interval_ms", &self.sweeper_interval_ms)
            .field("auto_confirm_after_secs", &self.auto_confirm_after_secs)
            .field("waitlist_offer_ttl_secs", &self.waitlist_offer_ttl_secs)
            .field("waitlist_interval_ms", &self.waitlist_interval_ms)
            .field("points_earn_rate_bps", &self.points_earn_rate_bps)
            .field("points_valid_days", &self.points_valid_days)
            .field(
                "points_expiry_interval_secs",
                &self.points_expiry_interval_secs,
            )
            .field("placement_batch_max", &self.placement_batch_max)
            .field("placement_linger_ms", &self.placement_linger_ms)
            .field("placement_queue_depth", &self.placement_queue_depth)
            .field("placement_strategy", &self.placement_strategy)
            .field("waiting_room_depth", &self.waiting_room_depth)
            .field("placement_writers", &self.placement_writers)
            .field("db_max_connections", &self.db_max_connections)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("payment_gateway", &self.payment_gateway)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("gate_ttl_secs", &self.gate_ttl_secs)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("rate_limit_user_per_sec", &self.rate_limit_user_per_sec)
            .field("rate_limit_ip_per_sec", &self.rate_limit_ip_per_sec)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
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

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, raw: String) -> Result<T, ConfigError> {
            raw.parse()
                .map_err(|_| ConfigError(format!("{name}: cannot parse {raw:?}")))
        }
        macro_rules! env {
            ($($field:ident),* $(,)?) => {$(
                let name = concat!("STAMPEDE_", stringify!($field)).to_ascii_uppercase();
                if let Some(raw) = var(&name) {
                    self.$field = parse(&name, raw)?;
                }
            )*};
        }
        env!(
            database_url,
            http_addr,
            access_token_ttl_secs,
            refresh_token_ttl_secs,
            hold_ttl_secs,
            sweeper_interval_ms,
            sweeper_batch_max,
            auto_confirm_after_secs,
            waitlist_offer_ttl_secs,
            waitlist_interval_ms,
            points_earn_rate_bps,
            points_valid_days,
            points_expiry_interval_secs,
            placement_batch_max,
            placement_linger_ms,
            placement_queue_depth,
            waiting_room_depth,
            waiting_room_ticket_ttl_secs,
            placement_strategy,
            lock_wait_ms,
            lock_lease_ms,
            lock_retry_ms,
            placement_writers,
            db_max_connections,
            db_acquire_timeout_ms,
            request_timeout_ms,
            body_limit_bytes,
            outbox_poll_ms,
            payment_gateway,
            redis_prefix,
            redis_timeout_ms,
            redis_probe_ms,
            gate_ttl_secs,
            cache_ttl_secs,
            cache_max_entries,
            rate_limit_user_per_sec,
            rate_limit_user_burst,
            rate_limit_ip_per_sec,
            rate_limit_ip_burst,
        );
        if let Some(url) = var("STAMPEDE_REDIS_URL") {
            self.redis_url = Some(url).filter(|u| !u.trim().is_empty());
        }
        if let Some(secret) = var("STAMPEDE_JWT_SECRET") {
            self.jwt_secret = Some(secret);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError(what.to_owned()))
            }
        };
        check(
            self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"),
            "database_url must start with sqlite:// or postgres://",
        )?;
        check(
            (1..=86_400).contains(&self.access_token_ttl_secs),
            "access_token_ttl_secs must be 1..=86400",
        )?;
        check(
            self.refresh_token_ttl_secs >= self.access_token_ttl_secs,
            "refresh_token_ttl_secs must be >= access_token_ttl_secs",
        )?;
        check(
            (1..=7 * 86_400).contains(&self.hold_ttl_secs),
            "hold_ttl_secs must be 1..=604800",
        )?;
        check(
            (10..=3_600_000).contains(&self.sweeper_interval_ms),
            "sweeper_interval_ms must be 10..=3600000",
        )?;
        check(
            (1..=10_000).contains(&self.sweeper_batch_max),
            "sweeper_batch_max must be 1..=10000",
        )?;
        check(
            (1..=90 * 86_400).contains(&self.auto_confirm_after_secs),
            "auto_confirm_after_secs must be 1..=7776000 (90 days)",
        )?;
        check(
            (1..=7 * 86_400).contains(&self.waitlist_offer_ttl_secs),
            "waitlist_offer_ttl_secs must be 1..=604800",
        )?;
        check(
            (10..=3_600_000).contains(&self.waitlist_interval_ms),
            "waitlist_interval_ms must be 10..=3600000",
        )?;
        check(
            (0..=10_000).contains(&self.points_earn_rate_bps),
            "points_earn_rate_bps must be 0..=10000",
        )?;
        check(
            (1..=3650).contains(&self.points_valid_days),
            "points_valid_days must be 1..=3650",
        )?;
        check(
            (1..=7 * 86_400).contains(&self.points_expiry_interval_secs),
            "points_expiry_interval_secs must be 1..=604800",
        )?;
        check(
            (1..=10_000).contains(&self.placement_batch_max),
            "placement_batch_max must be 1..=10000",
        )?;
        check(
            self.placement_linger_ms <= 1000,
            "placement_linger_ms must be <= 1000",
        )?;
        check(
            (1..=1_000_000).contains(&self.placement_queue_depth),
            "placement_queue_depth must be 1..=1000000",
        )?;
        check(
            self.waiting_room_depth <= 10_000_000,
            "waiting_room_depth must be <= 10000000",
        )?;
        check(
            self.placement_strategy == "batch"
                || (self.placement_strategy == "lock" && self.redis_url.is_some()),
            "placement_strategy must be \"batch\", or \"lock\" with redis_url set",
        )?;
        check(
            (1..=60_000).contains(&self.lock_wait_ms)
                && (1..=60_000).contains(&self.lock_lease_ms)
                && (1..=1000).contains(&self.lock_retry_ms),
            "lock_wait_ms and lock_lease_ms must be 1..=60000, lock_retry_ms 1..=1000",
        )?;
        check(
            (1..=86_400).contains(&self.waiting_room_ticket_ttl_secs),
            "waiting_room_ticket_ttl_secs must be 1..=86400",
        )?;
        check(
            (1..=64).contains(&self.placement_writers),
            "placement_writers must be 1..=64",
        )?;
        check(
            (1..=1000).contains(&self.db_max_connections),
            "db_max_connections must be 1..=1000",
        )?;
        check(
            (1..=300_000).contains(&self.request_timeout_ms),
            "request_timeout_ms must be 1..=300000",
        )?;
        check(
            (1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes),
            "body_limit_bytes must be 1KiB..=16MiB",
        )?;
        check(
            (1..=60_000).contains(&self.outbox_poll_ms),
            "outbox_poll_ms must be 1..=60000",
        )?;
        check(
            self.payment_gateway == "simulated",
            "payment_gateway must be \"simulated\"",
        )?;
        if let Some(secret) = &self.jwt_secret {
            check(secret.len() >= 32, "jwt_secret must be at least 32 bytes")?;
        }
        self.validate_shared()
    }

    /// The settings of what nodes share (`crate::cluster`).
    fn validate_shared(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &str| ok.then_some(()).ok_or(ConfigError(what.to_owned()));
        if let Some(url) = &self.redis_url {
            check(
                url.starts_with("redis://") || url.starts_with("redis+unix://"),
                "redis_url must start with redis:// (TLS is not supported)",
            )?;
        }
        check(
            (1..=64).contains(&self.redis_prefix.len())
                && !self.redis_prefix.contains(char::is_whitespace),
            "redis_prefix must be 1 to 64 bytes without whitespace",
        )?;
        check(
            (1..=10_000).contains(&self.redis_timeout_ms),
            "redis_timeout_ms must be 1..=10000",
        )?;
        check(
            (10..=60_000).contains(&self.redis_probe_ms),
            "redis_probe_ms must be 10..=60000",
        )?;
        check(
            (1..=86_400).contains(&self.gate_ttl_secs),
            "gate_ttl_secs must be 1..=86400",
        )?;
        check(
            (1..=86_400).contains(&self.cache_ttl_secs),
            "cache_ttl_secs must be 1..=86400",
        )?;
        check(
            (1..=1_000_000).contains(&self.cache_max_entries),
            "cache_max_entries must be 1..=1000000",
        )?;
        for (rate, burst, name) in [
            (
                self.rate_limit_user_per_sec,
                self.rate_limit_user_burst,
                "rate_limit_user",
            ),
            (
                self.rate_limit_ip_per_sec,
                self.rate_limit_ip_burst,
                "rate_limit_ip",
            ),
        ] {
            check(
                rate <= 1_000_000 && (rate == 0 || (1..=10_000_000).contains(&burst)),
                &format!(
                    "{name}_per_sec must be <= 1000000 and, when set, {name}_burst 1..=10000000"
                ),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults_and_is_validated() {
        let mut config = Config::default();
        let env = |name: &str| match name {
            "STAMPEDE_PLACEMENT_BATCH_MAX" => Some("1".to_owned()),
            "STAMPEDE_HTTP_ADDR" => Some("0.0.0.0:9000".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.placement_batch_max, 1);
        assert_eq!(config.http_addr.port(), 9000);
        config.placement_batch_max = 0;
        assert!(config.validate().is_err());
        let bad = |name: &str| (name == "STAMPEDE_HOLD_TTL_SECS").then(|| "soon".to_owned());
        assert!(Config::default().apply_env(bad).is_err());
    }

    #[test]
    fn auto_confirmation_is_one_second_to_ninety_days() {
        assert_eq!(Config::default().auto_confirm_after_secs, 604_800);
        let mut config = Config::default();
        let env =
            |name: &str| (name == "STAMPEDE_AUTO_CONFIRM_AFTER_SECS").then(|| "86400".to_owned());
        config.apply_env(env).unwrap();
        assert_eq!(config.auto_confirm_after_secs, 86_400);
        for (secs, ok) in [(0, false), (1, true), (7_776_000, true), (7_776_001, false)] {
            config.auto_confirm_after_secs = secs;
            assert_eq!(config.validate().is_ok(), ok, "{secs}");
        }
    }

    #[test]
    fn waitlist_settings_are_read_and_validated() {
        let config = Config::default();
        assert_eq!(
            (config.waitlist_offer_ttl_secs, config.waitlist_interval_ms),
            (300, 5000)
        );
        let mut config = Config::default();
        let env = |name: &str| match name {
            "STAMPEDE_WAITLIST_OFFER_TTL_SECS" => Some("60".to_owned()),
            "STAMPEDE_WAITLIST_INTERVAL_MS" => Some("250".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.waitlist_offer_ttl_secs, 60);
        assert_eq!(config.waitlist_interval_ms, 250);
        for (ttl, interval, ok) in [
            (0, 5000, false),
            (604_801, 5000, false),
            (1, 9, false),
            (1, 10, true),
        ] {
            config.waitlist_offer_ttl_secs = ttl;
            config.waitlist_interval_ms = interval;
            assert_eq!(config.validate().is_ok(), ok, "{ttl} {interval}");
        }
    }

    #[test]
    fn points_settings_are_read_and_validated() {
        let config = Config::default();
        assert_eq!(
            (
                config.points_earn_rate_bps,
                config.points_valid_days,
                config.points_expiry_interval_secs
            ),
            (100, 365, 86_400)
        );
        let mut config = Config::default();
        let env = |name: &str| match name {
            "STAMPEDE_POINTS_EARN_RATE_BPS" => Some("250".to_owned()),
            "STAMPEDE_POINTS_EXPIRY_INTERVAL_SECS" => Some("1".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.points_earn_rate_bps, 250);
        assert_eq!(config.points_expiry_interval_secs, 1);
        assert!(config.validate().is_ok());
        for (bps, days, secs, ok) in [
            (-1, 365, 60, false),
            (10_001, 365, 60, false),
            (0, 365, 60, true),
            (100, 0, 60, false),
            (100, 365, 0, false),
            (100, 365, 604_801, false),
        ] {
            config.points_earn_rate_bps = bps;
            config.points_valid_days = days;
            config.points_expiry_interval_secs = secs;
            assert_eq!(config.validate().is_ok(), ok, "{bps} {days} {secs}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config {
            database_url: "postgres://app:hunter2@db/stampede".into(),
            jwt_secret: Some("x".repeat(40)),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let with_redis = Config {
            redis_url: Some("redis://:s3cret@cache:6379/0".into()),
            ..Config::default()
        };
        let shown = format!("{with_redis:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains(&"x".repeat(40)));
    }

    #[test]
    fn shared_state_settings_are_read_and_validated() {
        let mut config = Config::default();
        let env = |name: &str| match name {
            "STAMPEDE_REDIS_URL" => Some("redis://127.0.0.1:6379".to_owned()),
            "STAMPEDE_RATE_LIMIT_IP_PER_SEC" => Some("0".to_owned()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(config.rate_limit_ip_per_sec, 0);
        assert!(config.validate().is_ok(), "0 disables a limit");
        let bad = [
            Config {
                redis_url: Some("rediss://tls-host".into()),
                ..Config::default()
            },
            Config {
                rate_limit_user_burst: 0,
                ..Config::default()
            },
            Config {
                redis_prefix: String::new(),
                ..Config::default()
            },
            Config {
                redis_timeout_ms: 0,
                ..Config::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn toml_file_is_read() {
        let config: Config = toml::from_str("hold_ttl_secs = 30\nplacement_batch_max = 8").unwrap();
        assert_eq!(config.hold_ttl_secs, 30);
        assert_eq!(config.placement_batch_max, 8);
        assert_eq!(config.http_addr, Config::default().http_addr);
    }
}
