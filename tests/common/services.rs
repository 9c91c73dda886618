//! The one rule for the services a test needs beyond SQLite, PostgreSQL, Redis and Kafka
//! alike:
//!
//! - a service is *available* when its variable (`STAMPEDE_TEST_PG_URL`,
//!   `STAMPEDE_TEST_REDIS_URL`) is set and the service answers there — for Kafka, when
//!   `STAMPEDE_TEST_TANSU_BIN` names a Tansu broker binary that runs (each Kafka test starts
//!   brokers of its own from it, so there is no shared broker to probe);
//! - when it is not available and its require variable (`STAMPEDE_TEST_REQUIRE_PG=1`,
//!   `STAMPEDE_TEST_REQUIRE_REDIS=1`, `STAMPEDE_TEST_REQUIRE_KAFKA=1`; `scripts/test` sets
//!   all three) is set, the test FAILS here, saying which variable is missing or what did
//!   not answer;
//! - when it is not available and not required, the harness skips the test before the test
//!   starts anything, with a loud note on stderr (uncaptured: it shows in a normal run).
//!
//! The harnesses (`tests/api/helpers`, `tests/store/harness.rs`, `tests/kafka/harness`) call
//! [`available`] once per
//! test, before creating a database or a server; test bodies never look for a service and
//! never return early. Each service is probed once per test process, so every test of a
//! run gets the same answer and an unreachable service costs one timeout, not one per test.

use std::io::Write;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a probe waits for a service to answer before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    /// A Kafka-compatible broker: its "URL" is the path of the Tansu binary.
    Kafka,
}

impl Service {
    pub const fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Redis => "Redis",
            Service::Kafka => "Kafka (Tansu)",
        }
    }

    pub const fn url_var(self) -> &'static str {
        match self {
            Service::Postgres => "STAMPEDE_TEST_PG_URL",
            Service::Redis => "STAMPEDE_TEST_REDIS_URL",
            Service::Kafka => "STAMPEDE_TEST_TANSU_BIN",
        }
    }

    pub const fn require_var(self) -> &'static str {
        match self {
            Service::Postgres => "STAMPEDE_TEST_REQUIRE_PG",
            Service::Redis => "STAMPEDE_TEST_REQUIRE_REDIS",
            Service::Kafka => "STAMPEDE_TEST_REQUIRE_KAFKA",
        }
    }

    /// The argument of `scripts/services.sh` that provides it (installs and starts it; for
    /// Kafka, installs Tansu and prints the binary's path).
    const fn script_arg(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Redis => "redis",
            Service::Kafka => "tansu-bin",
        }
    }

    /// `1` requires the service; unset, empty or `0` does not; anything else is a mistake
    /// that must not quietly mean either.
    fn required(self) -> bool {
        let var = self.require_var();
        match std::env::var(var) {
            Err(std::env::VarError::NotPresent) => false,
            Ok(value) if value.is_empty() || value == "0" => false,
            Ok(value) if value == "1" => true,
            other => panic!("{var} must be 1 (required) or 0 (optional), not {other:?}"),
        }
    }

    /// This process's one answer: the URL, or why the service is not available.
    async fn probed(self) -> Result<String, String> {
        static POSTGRES: OnceCell<Result<String, String>> = OnceCell::const_new();
        static REDIS: OnceCell<Result<String, String>> = OnceCell::const_new();
        static KAFKA: OnceCell<Result<String, String>> = OnceCell::const_new();
        let cell = match self {
            Service::Postgres => &POSTGRES,
            Service::Redis => &REDIS,
            Service::Kafka => &KAFKA,
        };
        cell.get_or_init(|| self.probe()).await.clone()
    }

    async fn probe(self) -> Result<String, String> {
        let var = self.url_var();
        let url = match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => return Err(format!("{var} is not set")),
        };
        let answer = match self {
            Service::Postgres => tokio::time::timeout(PROBE_TIMEOUT, probe_postgres(&url)).await,
            Service::Redis => tokio::time::timeout(PROBE_TIMEOUT, probe_redis(&url)).await,
            Service::Kafka => tokio::time::timeout(PROBE_TIMEOUT, probe_tansu(&url)).await,
        };
        // A binary's path has no password to hide.
        let shown = match self {
            Service::Kafka => url.clone(),
            Service::Postgres | Service::Redis => redacted(&url),
        };
        match answer {
            Ok(Ok(())) => Ok(url),
            Ok(Err(e)) => Err(format!("{var}={shown} does not answer: {e}")),
            Err(_) => Err(format!(
                "{var}={shown} did not answer within {PROBE_TIMEOUT:?}"
            )),
        }
    }
}

async fn probe_postgres(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.ping().await;
    let _ = conn.close().await;
    Ok(())
}

async fn probe_redis(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

/// Runs `{bin} --version`: an executable that is not Tansu, or cannot run here (another
/// architecture), fails now rather than as a broker that never listens.
async fn probe_tansu(bin: &str) -> Result<(), String> {
    let bin = bin.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&bin)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot run it: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout.lines().next().unwrap_or_default();
    if output.status.success() && version.starts_with("tansu") {
        Ok(())
    } else {
        Err(format!(
            "`--version` answered {} with {version:?}, not tansu's version",
            output.status
        ))
    }
}

/// `url` with its password, if any, replaced by `***`, for messages.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The URLs of the services a test needs, all available.
#[derive(Debug, Clone)]
pub struct Available {
    urls: Vec<(Service, String)>,
}

impl Available {
    /// The URL of `service`, which the test must have asked [`available`] for.
    pub fn url(&self, service: Service) -> &str {
        self.urls
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
            .unwrap_or_else(|| panic!("the harness did not ask for {}", service.name()))
    }
}

/// Applies the rule to every service in `needs`: their URLs when all are available; a
/// panic when one that is missing is required; otherwise `None`, after telling stderr that
/// the test is skipped and why. Every service is looked at before deciding, so a required
/// one that is missing fails the test even when an optional one is missing too.
pub async fn available(needs: &[Service]) -> Option<Available> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let mut urls = Vec::with_capacity(needs.len());
    let mut missing = Vec::new();
    for &service in needs {
        match service.probed().await {
            Ok(url) => urls.push((service, url)),
            Err(why) if service.required() => panic!(
                "{test} needs {name} and {require}=1 forbids skipping it, but {why}. \
                 `scripts/services.sh {arg}` provides it; `scripts/test` also sets {url_var}.",
                name = service.name(),
                require = service.require_var(),
                arg = service.script_arg(),
                url_var = service.url_var(),
            ),
            Err(why) => missing.push((service, why)),
        }
    }
    if missing.is_empty() {
        return Some(Available { urls });
    }
    for (service, why) in missing {
        // Straight to the process's stderr, not `eprintln!`: the test harness captures
        // `eprintln!` and shows it only for failed tests, which would make a skip silent.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!! SKIPPED {test}: it needs {name}, which is not available ({why}).\n\
             !!!! It runs when {url_var} points at a working {name}; {require}=1 turns this \
             skip into a failure (scripts/test sets it).\n",
            name = service.name(),
            url_var = service.url_var(),
            require = service.require_var(),
        );
    }
    None
}
