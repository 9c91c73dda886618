use super::*;

/// A configuration read from defaults and these environment variables, not validated.
fn from_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    config.apply_env(|name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| (*value).to_owned())
    })?;
    Ok(config)
}

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
    let env = |name: &str| (name == "STAMPEDE_AUTO_CONFIRM_AFTER_SECS").then(|| "86400".to_owned());
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
        jwt_secret: Some(Secret::new("x".repeat(40))),
        ..Config::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains(&"x".repeat(40)), "{shown}");
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
    assert_eq!(
        config.redis_url.as_ref().map(ConnectionUrl::expose),
        Some("redis://127.0.0.1:6379")
    );
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
        Config {
            kafka_brokers: Some("no-port".into()),
            ..Config::default()
        },
        Config {
            kafka_brokers: Some("a:9092,:9093".into()),
            ..Config::default()
        },
        Config {
            kafka_topic_prefix: "has space.".into(),
            ..Config::default()
        },
        Config {
            kafka_partitions: "order=16".into(),
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

/// The values of `Config::default()` before settings were declared once (issue 8).
#[test]
fn defaults_are_unchanged() {
    let expected = [
        ("env", "\"development\""),
        ("database_url", "\"sqlite://stampede.db\""),
        ("http_addr", "127.0.0.1:8080"),
        ("jwt_secret", "None"),
        ("access_token_ttl_secs", "900"),
        ("refresh_token_ttl_secs", "1209600"),
        ("hold_ttl_secs", "600"),
        ("sweeper_interval_ms", "1000"),
        ("sweeper_batch_max", "500"),
        ("auto_confirm_after_secs", "604800"),
        ("waitlist_offer_ttl_secs", "300"),
        ("waitlist_interval_ms", "5000"),
        ("points_earn_rate_bps", "100"),
        ("points_valid_days", "365"),
        ("points_expiry_interval_secs", "86400"),
        ("placement_batch_max", "256"),
        ("placement_linger_ms", "0"),
        ("placement_queue_depth", "4096"),
        ("placement_strategy", "\"batch\""),
        ("lock_wait_ms", "3000"),
        ("lock_lease_ms", "3000"),
        ("lock_retry_ms", "5"),
        ("waiting_room_depth", "100000"),
        ("waiting_room_ticket_ttl_secs", "300"),
        ("waiting_room_lease_ms", "3000"),
        ("waiting_room_poll_ms", "100"),
        ("shutdown_grace_secs", "10"),
        ("placement_writers", "1"),
        ("db_max_connections", "16"),
        ("db_acquire_timeout_ms", "5000"),
        ("request_timeout_ms", "10000"),
        ("body_limit_bytes", "65536"),
        ("catalog_batch_max", "1000"),
        ("catalog_batch_body_limit_bytes", "1048576"),
        ("outbox_poll_ms", "200"),
        ("payment_gateway", "\"simulated\""),
        ("portone_api_url", "\"https://api.portone.io\""),
        ("portone_api_secret", "None"),
        ("portone_store_id", "None"),
        ("portone_webhook_secret", "None"),
        ("payment_timeout_ms", "5000"),
        ("payment_reconcile_interval_secs", "60"),
        ("refund_retry_interval_secs", "60"),
        ("redis_url", "None"),
        ("redis_prefix", "\"stampede:\""),
        ("redis_timeout_ms", "250"),
        ("redis_probe_ms", "1000"),
        ("gate_ttl_secs", "30"),
        ("cache_ttl_secs", "60"),
        ("cache_max_entries", "10000"),
        ("rate_limit_user_per_sec", "20"),
        ("rate_limit_user_burst", "40"),
        ("rate_limit_ip_per_sec", "2000"),
        ("rate_limit_ip_burst", "4000"),
        ("trusted_proxies", "\"\""),
        ("login_failures_max", "10"),
        ("login_failure_window_secs", "900"),
        ("signups_per_ip_max", "20"),
        ("signup_window_secs", "3600"),
        ("password_hash_concurrency", "0"),
        ("streams_per_user_max", "5"),
        ("stream_max_age_secs", "1800"),
        ("kafka_brokers", "None"),
        ("kafka_topic_prefix", "\"stampede.\""),
        (
            "kafka_partitions",
            "\"order=16,product=12,coupon=8,points=8,*=4\"",
        ),
        ("workers", "\"on\""),
        ("consumer_max_attempts", "3"),
        ("consumer_backoff_ms", "200"),
        ("dlq_retry_interval_secs", "300"),
        ("dlq_retry_max", "5"),
        ("verify_interval_secs", "3600"),
        ("settlement_timezone", "\"Asia/Seoul\""),
        ("settlement_at", "\"04:00\""),
        ("relay_lease_ms", "3000"),
        ("relay_poll_ms", "20"),
        ("relay_batch_max", "1000"),
    ];
    let names: Vec<&str> = Config::SETTINGS.iter().map(|s| s.name).collect();
    let expected_names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected_names);
    let shown = format!("{:?}", Config::default());
    for (name, value) in expected {
        assert!(
            shown.contains(&format!(" {name}: {value},"))
                || shown.contains(&format!(" {name}: {value} }}")),
            "{name} = {value} in {shown}"
        );
    }
    assert!(Config::default().validate().is_ok());
}

/// Every range as it was before settings were declared once (issue 8): each bound is
/// accepted, each value just outside is refused with `<name> must be <lo>..=<hi>`.
#[test]
fn ranges_are_unchanged() {
    let ranges: [(&str, i64, i64); 53] = [
        ("access_token_ttl_secs", 1, 86_400),
        ("hold_ttl_secs", 1, 604_800),
        ("sweeper_interval_ms", 10, 3_600_000),
        ("sweeper_batch_max", 1, 10_000),
        ("auto_confirm_after_secs", 1, 7_776_000),
        ("waitlist_offer_ttl_secs", 1, 604_800),
        ("waitlist_interval_ms", 10, 3_600_000),
        ("points_earn_rate_bps", 0, 10_000),
        ("points_valid_days", 1, 3650),
        ("points_expiry_interval_secs", 1, 604_800),
        ("placement_batch_max", 1, 10_000),
        ("placement_linger_ms", 0, 1000),
        ("placement_queue_depth", 1, 1_000_000),
        ("lock_wait_ms", 1, 60_000),
        ("lock_lease_ms", 1, 60_000),
        ("lock_retry_ms", 1, 1000),
        ("waiting_room_depth", 0, 10_000_000),
        ("waiting_room_ticket_ttl_secs", 1, 86_400),
        ("waiting_room_lease_ms", 500, 60_000),
        ("waiting_room_poll_ms", 10, 10_000),
        ("shutdown_grace_secs", 0, 600),
        ("placement_writers", 1, 64),
        ("db_max_connections", 1, 1000),
        ("request_timeout_ms", 1, 300_000),
        ("body_limit_bytes", 1024, 16 * 1024 * 1024),
        ("catalog_batch_max", 1, 10_000),
        ("catalog_batch_body_limit_bytes", 1024, 64 * 1024 * 1024),
        ("outbox_poll_ms", 1, 60_000),
        ("payment_timeout_ms", 100, 60_000),
        ("payment_reconcile_interval_secs", 1, 3600),
        ("refund_retry_interval_secs", 1, 3600),
        ("redis_timeout_ms", 1, 10_000),
        ("redis_probe_ms", 10, 60_000),
        ("gate_ttl_secs", 1, 86_400),
        ("cache_ttl_secs", 1, 86_400),
        ("cache_max_entries", 1, 1_000_000),
        ("rate_limit_user_per_sec", 0, 1_000_000),
        ("rate_limit_ip_per_sec", 0, 1_000_000),
        ("login_failures_max", 1, 1_000_000),
        ("login_failure_window_secs", 1, 86_400),
        ("signups_per_ip_max", 1, 1_000_000),
        ("signup_window_secs", 1, 86_400),
        ("password_hash_concurrency", 0, 1024),
        ("streams_per_user_max", 1, 1000),
        ("stream_max_age_secs", 1, 86_400),
        ("consumer_max_attempts", 1, 100),
        ("consumer_backoff_ms", 1, 60_000),
        ("dlq_retry_interval_secs", 1, 86_400),
        ("dlq_retry_max", 0, 1000),
        ("verify_interval_secs", 10, 604_800),
        ("relay_lease_ms", 500, 60_000),
        ("relay_poll_ms", 1, 10_000),
        ("relay_batch_max", 1, 100_000),
    ];
    for (name, lo, hi) in ranges {
        let var = format!("STAMPEDE_{}", name.to_ascii_uppercase());
        let validated = |value: i64| {
            let value = value.to_string();
            from_env(&[(var.as_str(), value.as_str())])?.validate()
        };
        validated(lo).unwrap_or_else(|e| panic!("{name} = {lo}: {e}"));
        validated(hi).unwrap_or_else(|e| panic!("{name} = {hi}: {e}"));
        let refused = format!("configuration: {name} must be {lo}..={hi}");
        assert_eq!(validated(hi + 1).unwrap_err().to_string(), refused);
        match validated(lo - 1) {
            Err(e) if lo == 0 && name != "points_earn_rate_bps" => {
                assert!(e.to_string().contains("cannot parse"), "{e}")
            }
            Err(e) => assert_eq!(e.to_string(), refused),
            Ok(()) => panic!("{name} = {} accepted", lo - 1),
        }
    }
    // The other numbers have no range of their own: only cross-field checks, or none yet.
    let unbounded: Vec<&str> = Config::SETTINGS
        .iter()
        .filter(|s| is_number(s.ty) && !ranges.iter().any(|(name, ..)| *name == s.name))
        .map(|s| s.name)
        .collect();
    assert_eq!(
        unbounded,
        [
            "refresh_token_ttl_secs",
            "db_acquire_timeout_ms",
            "rate_limit_user_burst",
            "rate_limit_ip_burst"
        ]
    );
}

fn is_number(ty: &str) -> bool {
    ["u32", "u64", "usize", "i64"].contains(&ty)
}

#[test]
fn cross_field_rules_hold() {
    let refused = |config: Config| config.validate().unwrap_err().to_string();
    let short_refresh = Config {
        refresh_token_ttl_secs: 899,
        ..Config::default()
    };
    assert_eq!(
        refused(short_refresh),
        "configuration: refresh_token_ttl_secs must be >= access_token_ttl_secs"
    );
    let lock = Config {
        placement_strategy: PlacementStrategy::Lock,
        ..Config::default()
    };
    assert_eq!(
        refused(lock.clone()),
        "configuration: placement_strategy must be \"batch\", or \"lock\" with redis_url set"
    );
    let lock_on_redis = Config {
        redis_url: Some("redis://cache".into()),
        ..lock
    };
    assert!(lock_on_redis.validate().is_ok());
    let no_burst = Config {
        rate_limit_ip_burst: 0,
        ..Config::default()
    };
    assert_eq!(
        refused(no_burst),
        "configuration: rate_limit_ip_burst must be 1..=10000000"
    );
    let huge_burst = Config {
        rate_limit_user_burst: 10_000_001,
        ..Config::default()
    };
    assert!(huge_burst.validate().is_err());
    let no_rate_no_burst = Config {
        rate_limit_user_per_sec: 0,
        rate_limit_user_burst: 0,
        rate_limit_ip_per_sec: 0,
        rate_limit_ip_burst: 0,
        ..Config::default()
    };
    assert!(no_rate_no_burst.validate().is_ok());
}

#[test]
fn checked_strings_keep_their_messages() {
    for (var, value, message) in [
        (
            "STAMPEDE_DATABASE_URL",
            "mysql://db",
            "database_url must start with sqlite:// or postgres://",
        ),
        (
            "STAMPEDE_JWT_SECRET",
            "short",
            "jwt_secret must be at least 32 bytes",
        ),
        (
            "STAMPEDE_REDIS_URL",
            "rediss://h",
            "redis_url must start with redis:// (TLS is not supported)",
        ),
        (
            "STAMPEDE_REDIS_PREFIX",
            "a b",
            "redis_prefix must be 1 to 64 bytes without whitespace",
        ),
    ] {
        let refused = from_env(&[(var, value)]).unwrap().validate().unwrap_err();
        assert_eq!(refused.to_string(), format!("configuration: {message}"));
    }
    let (secret, prefix) = ("k".repeat(32), "p".repeat(64));
    let fine = from_env(&[
        ("STAMPEDE_DATABASE_URL", "postgres://u:p@db/s"),
        ("STAMPEDE_JWT_SECRET", &secret),
        ("STAMPEDE_REDIS_URL", "redis+unix:///run/redis.sock"),
        ("STAMPEDE_REDIS_PREFIX", &prefix),
    ]);
    fine.unwrap().validate().unwrap();
}

#[test]
fn every_setting_appears_in_debug() {
    let shown = format!("{:?}", Config::default());
    for setting in Config::SETTINGS {
        assert_eq!(
            shown.matches(&format!(" {}: ", setting.name)).count(),
            1,
            "{} in {shown}",
            setting.name
        );
    }
    assert!(!shown.contains(".."), "{shown}");
}

#[test]
fn no_secret_value_appears_in_debug() {
    let secrets: Vec<&str> = Config::SETTINGS
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.name)
        .collect();
    // A new secret setting must be given a value below.
    assert_eq!(
        secrets,
        [
            "database_url",
            "jwt_secret",
            "portone_api_secret",
            "portone_webhook_secret",
            "redis_url"
        ]
    );
    let config = from_env(&[
        (
            "STAMPEDE_DATABASE_URL",
            "postgres://app:hunter2@db/stampede?password=pw1",
        ),
        ("STAMPEDE_JWT_SECRET", "signing-key-signing-key-signing-key"),
        ("STAMPEDE_REDIS_URL", "redis://t0ken@cache:6379"),
        ("STAMPEDE_PORTONE_API_SECRET", "portone-api-secret"),
        (
            "STAMPEDE_PORTONE_WEBHOOK_SECRET",
            "whsec_d2ViaG9vay1zZWNyZXQ=",
        ),
    ])
    .unwrap();
    config.validate().unwrap();
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        for secret in [
            "hunter2",
            "pw1",
            "signing-key",
            "t0ken",
            "portone-api-secret",
            "d2ViaG9vay1zZWNyZXQ",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // Redaction hides the credentials, not where they lead.
        assert!(
            shown.contains("postgres://app:***@db/stampede?password=***"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("redis://***@cache:6379"), "{shown}");
    }
}

/// A value for each type of setting, different from every default, and how `Debug` shows
/// it. A new type of setting must be added here.
fn sample(ty: &str) -> (&'static str, &'static str) {
    match ty {
        "u32" | "u64" | "usize" | "i64" => ("7", "7"),
        "SocketAddr" => ("0.0.0.0:9000", "0.0.0.0:9000"),
        "String" => ("other:", "\"other:\""),
        "ConnectionUrl" => ("postgres://db/s", "\"postgres://db/s\""),
        "Option<ConnectionUrl>" => ("redis://cache", "Some(\"redis://cache\")"),
        "Option<Secret>" => ("0123456789abcdef0123456789abcdef", "Some(<redacted>)"),
        "PlacementStrategy" => ("lock", "\"lock\""),
        "PaymentGateway" => ("portone", "\"portone\""),
        "Environment" => ("production", "\"production\""),
        "Option<String>" => ("kafka:9092", "Some(\"kafka:9092\")"),
        "Workers" => ("off", "\"off\""),
        "TrustedProxies" => ("10.0.0.0/8, ::1", "\"10.0.0.0/8,::1\""),
        other => panic!("no sample value for settings of type {other}"),
    }
}

#[test]
fn every_setting_is_read_from_the_environment() {
    let vars: Vec<(String, &str)> = Config::SETTINGS
        .iter()
        .map(|s| (s.env_var(), sample(s.ty).0))
        .collect();
    let mut config = Config::default();
    config
        .apply_env(|name| {
            let found = vars.iter().find(|(var, _)| var == name);
            found.map(|(_, value)| (*value).to_owned())
        })
        .unwrap();
    let shown = format!("{config:?}");
    for setting in Config::SETTINGS {
        let expected = format!(" {}: {}", setting.name, sample(setting.ty).1);
        assert!(shown.contains(&expected), "{expected} in {shown}");
    }
    assert_eq!(config.placement_strategy, PlacementStrategy::Lock);
    assert_eq!(
        config.jwt_secret.as_ref().map(Secret::expose),
        Some("0123456789abcdef0123456789abcdef")
    );
}

#[test]
fn unreadable_values_name_their_variable() {
    for setting in Config::SETTINGS {
        let var = setting.env_var();
        let texts = [
            "String",
            "ConnectionUrl",
            "Option<ConnectionUrl>",
            "Option<Secret>",
            "Option<String>",
        ];
        let accepts_any_text = texts.contains(&setting.ty);
        match from_env(&[(var.as_str(), "eleven")]) {
            Ok(_) => assert!(accepts_any_text, "{var}=eleven accepted"),
            Err(e) => assert!(
                e.to_string()
                    .starts_with(&format!("configuration: {var}: ")),
                "{e}"
            ),
        }
    }
    let unknown = from_env(&[("STAMPEDE_PLACEMENT_STRATEGY", "fifo")]).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "configuration: STAMPEDE_PLACEMENT_STRATEGY: unknown variant `fifo`, expected `batch` or `lock`"
    );
}

#[test]
fn toml_reads_every_kind_of_setting_and_the_environment_wins() {
    let text = r#"
        database_url = "postgres://app:pw@db/stampede"
        jwt_secret = "0123456789abcdef0123456789abcdef"
        redis_url = "redis://cache"
        placement_strategy = "lock"
        payment_gateway = "simulated"
        http_addr = "0.0.0.0:9000"
        hold_ttl_secs = 30
        placement_batch_max = 8
    "#;
    let mut config: Config = toml::from_str(text).unwrap();
    assert_eq!(
        config.database_url.expose(),
        "postgres://app:pw@db/stampede"
    );
    assert!(config.jwt_secret.is_some());
    assert_eq!(config.placement_strategy, PlacementStrategy::Lock);
    assert_eq!(config.http_addr.port(), 9000);
    let env = |name: &str| (name == "STAMPEDE_HOLD_TTL_SECS").then(|| "45".to_owned());
    config.apply_env(env).unwrap();
    assert_eq!((config.hold_ttl_secs, config.placement_batch_max), (45, 8));
    assert_eq!(
        config.sweeper_interval_ms,
        Config::default().sweeper_interval_ms
    );
    config.validate().unwrap();
    for bad in [
        "hold_ttl = 30",
        "placement_strategy = \"fifo\"",
        "payment_gateway = \"stripe\"",
    ] {
        assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
    }
}

/// STYLE 7: a number is named with its unit, or is a count named by what it counts.
#[test]
fn numbers_are_named_with_their_unit() {
    let units = ["_secs", "_ms", "_bytes", "_bps", "_days", "_per_sec"];
    let counts = [
        "_max",
        "_depth",
        "_entries",
        "_connections",
        "_writers",
        "_burst",
        "_attempts",
        "_concurrency",
    ];
    for setting in Config::SETTINGS.iter().filter(|s| is_number(s.ty)) {
        assert!(
            units
                .iter()
                .chain(&counts)
                .any(|end| setting.name.ends_with(end)),
            "{} has no unit",
            setting.name
        );
    }
}

#[test]
fn trusted_proxies_are_parsed_once_and_a_bad_list_is_refused() {
    let config = from_env(&[("STAMPEDE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).unwrap();
    assert!(config
        .trusted_proxies
        .contains("10.20.30.40".parse().unwrap()));
    assert!(!config.trusted_proxies.contains("11.0.0.1".parse().unwrap()));
    let error = from_env(&[("STAMPEDE_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")])
        .expect_err("a host name is not an address");
    assert!(
        error
            .to_string()
            .contains("STAMPEDE_TRUSTED_PROXIES: \"10.0.0.0/8,proxy.local\" must be IP addresses"),
        "{error}"
    );
    let from_file: Config = toml::from_str("trusted_proxies = \"fd00::/8\"").unwrap();
    assert!(from_file
        .trusted_proxies
        .contains("fd00::1".parse().unwrap()));
    assert!(toml::from_str::<Config>("trusted_proxies = \"fd00::/200\"").is_err());
    assert!(Config::default().trusted_proxies.is_empty());
}

#[test]
fn password_hash_concurrency_zero_is_twice_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(Config::default().password_hash_permits(), cores * 2);
    let config = from_env(&[("STAMPEDE_PASSWORD_HASH_CONCURRENCY", "3")]).unwrap();
    assert_eq!(config.password_hash_permits(), 3);
}

#[test]
fn readme_lists_every_setting() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Configuration\n")
        .expect("a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    for setting in Config::SETTINGS {
        let var = format!("`{}`", setting.env_var());
        assert!(
            section.contains(&var),
            "README's configuration table lacks {var}"
        );
    }
    // And lists nothing that is not a setting.
    let known: Vec<String> = Config::SETTINGS.iter().map(Setting::env_var).collect();
    for row in section
        .lines()
        .filter(|line| line.starts_with("| `STAMPEDE_"))
    {
        let names = row.split('|').nth(1).unwrap_or_default();
        for name in names
            .split('`')
            .filter(|part| part.starts_with("STAMPEDE_"))
        {
            assert!(
                known.iter().any(|k| k == name),
                "README lists unknown {name}"
            );
        }
    }
}

#[test]
fn settlement_time_zone_and_time_of_day_are_checked() {
    for (var, value) in [
        ("STAMPEDE_SETTLEMENT_TIMEZONE", "Europe/Berlin"),
        ("STAMPEDE_SETTLEMENT_TIMEZONE", "UTC"),
        ("STAMPEDE_SETTLEMENT_AT", "00:00"),
        ("STAMPEDE_SETTLEMENT_AT", "23:59"),
    ] {
        let config = from_env(&[(var, value)]).unwrap();
        config
            .validate()
            .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
    }
    for (var, value, refused) in [
        (
            "STAMPEDE_SETTLEMENT_TIMEZONE",
            "Asia/Atlantis",
            "settlement_timezone must be an IANA time zone name, e.g. Asia/Seoul",
        ),
        (
            "STAMPEDE_SETTLEMENT_AT",
            "4:00",
            "settlement_at must be a local time HH:MM",
        ),
        (
            "STAMPEDE_SETTLEMENT_AT",
            "24:00",
            "settlement_at must be a local time HH:MM",
        ),
        (
            "STAMPEDE_SETTLEMENT_AT",
            "aé:00",
            "settlement_at must be a local time HH:MM",
        ),
    ] {
        let error = from_env(&[(var, value)]).unwrap().validate().unwrap_err();
        assert_eq!(error.to_string(), format!("configuration: {refused}"));
    }
}

#[test]
fn production_refuses_the_payment_simulator() {
    let refused = from_env(&[("STAMPEDE_ENV", "production")])
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(refused.contains("moves no money"), "{refused}");
    // The simulator is fine in development, which is the default.
    from_env(&[("STAMPEDE_ENV", "development")])
        .unwrap()
        .validate()
        .unwrap();
    Config::default().validate().unwrap();
}

#[test]
fn portone_needs_its_secrets_and_store() {
    let all = [
        ("STAMPEDE_ENV", "production"),
        ("STAMPEDE_PAYMENT_GATEWAY", "portone"),
        ("STAMPEDE_PORTONE_API_SECRET", "api-secret"),
        ("STAMPEDE_PORTONE_STORE_ID", "store-1"),
        (
            "STAMPEDE_PORTONE_WEBHOOK_SECRET",
            "whsec_c2VjcmV0LXNlY3JldA==",
        ),
    ];
    let config = from_env(&all).unwrap();
    config.validate().unwrap();
    assert_eq!(config.payment_gateway, PaymentGateway::Portone);
    assert!(!format!("{config:?}").contains("api-secret"));
    for missing in 2..all.len() {
        let mut vars = all.to_vec();
        let (name, _) = vars.remove(missing);
        let refused = from_env(&vars).unwrap().validate().unwrap_err().to_string();
        let setting = name.trim_start_matches("STAMPEDE_").to_ascii_lowercase();
        assert!(
            refused.contains(&format!("{setting} must be set")),
            "{refused}"
        );
        // Set but empty is no better.
        vars.push((name, ""));
        assert!(from_env(&vars).unwrap().validate().is_err(), "{name} empty");
    }
    let not_whsec = [("STAMPEDE_PORTONE_WEBHOOK_SECRET", "c2VjcmV0LXNlY3JldA==")];
    let refused = from_env(&not_whsec).unwrap().validate().unwrap_err();
    assert!(refused
        .to_string()
        .contains("portone_webhook_secret must be whsec_"));
    let plain = [("STAMPEDE_PORTONE_API_URL", "ftp://api.portone.io")];
    assert!(from_env(&plain).unwrap().validate().is_err());
}
