//! Running a test: the services it needs, a fresh database, a server on port 0 with the
//! test's own clock, the body, then teardown whatever happened. Further nodes of the same
//! deployment for the scale-out tests.

use crate::helpers::{available, Available, Backend, Service, TestDb};
use futures_util::FutureExt;
use stampede::clock::OffsetClock;
use stampede::config::Config;
use stampede::http::AppState;
use stampede::wiring::Server;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;

/// How long a server gets to stop after its shutdown signal before the test fails.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Generous: the 500-buyer drop on two shared cores must not trip it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The configuration values tests reason about.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hold_ttl_secs: u64,
    pub access_token_ttl_secs: u64,
    pub body_limit_bytes: usize,
}

/// A handle on one running server. Cheap to clone into spawned tasks. Its methods live
/// with their concern: `client` (requests), `accounts`, `catalog`, `orders`, `sse`.
#[derive(Clone)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    pub database_url: String,
    pub limits: Limits,
    /// The servers' clock: a test skips past a deadline with `app.clock.advance(…)` instead
    /// of sleeping until it.
    pub clock: Arc<OffsetClock>,
    /// The admin's access token, shared by the nodes of one test (`accounts`).
    pub(super) admin: Arc<OnceCell<String>>,
}

fn init_tracing() {
    // Server logs only on request (`TEST_LOG=stampede=debug`): they drown test output.
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Applies the services rule to what `backend` and `needs` ask for (the one place a test
/// is skipped), creates the database, starts the server, runs `body`, then stops the
/// server and drops the database whatever happened, and only then re-raises a panic of
/// the body.
pub async fn run_on<C, F, Fut>(backend: Backend, needs: &[Service], configure: C, body: F)
where
    C: FnOnce(&mut Config, &Available),
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    init_tracing();
    let all: Vec<Service> = backend.services().iter().chain(needs).copied().collect();
    let Some(services) = available(&all).await else {
        return;
    };
    let db = TestDb::create(backend, &services).await;
    let mut config = Config {
        database_url: db.url().to_owned().into(),
        http_addr: "127.0.0.1:0".parse().expect("socket address"),
        // A test drives one account far faster than a person would (an admin creating 50
        // products in a blink); tests/api/rate_limits.rs sets the limits it checks.
        rate_limit_user_per_sec: 0,
        ..Config::default()
    };
    configure(&mut config, &services);

    let clock = OffsetClock::new();
    let started = AssertUnwindSafe(start(config, backend, db.url().to_owned(), clock))
        .catch_unwind()
        .await;
    let (app, running) = match started {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            db.destroy().await;
            panic!("Server::bind failed on {backend:?}: {e:#}");
        }
        Err(panic) => {
            db.destroy().await;
            std::panic::resume_unwind(panic);
        }
    };

    let outcome = AssertUnwindSafe(body(app)).catch_unwind().await;
    let stopped = running.stop().await;
    db.destroy().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    if let Err(problem) = stopped {
        panic!("{problem}");
    }
}

struct Running {
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) -> Result<(), String> {
        let _ = self.shutdown.send(());
        let abort = self.handle.abort_handle();
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.handle).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("Server::run returned an error: {e:#}")),
            Ok(Err(join)) => Err(format!("Server::run panicked: {join}")),
            Err(_) => {
                abort.abort();
                Err(format!(
                    "server did not shut down within {SHUTDOWN_TIMEOUT:?}"
                ))
            }
        }
    }
}

async fn start(
    config: Config,
    backend: Backend,
    database_url: String,
    clock: Arc<OffsetClock>,
) -> anyhow::Result<(TestApp, Running)> {
    let limits = Limits {
        hold_ttl_secs: config.hold_ttl_secs,
        access_token_ttl_secs: config.access_token_ttl_secs,
        body_limit_bytes: config.body_limit_bytes,
    };
    let server = Server::bind_with_clock(config, clock.clone()).await?;
    let addr = server.local_addr();
    let state = server.state();
    let (shutdown, signal) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = signal.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let app = TestApp {
        root: format!("http://{addr}"),
        client,
        state,
        backend,
        database_url,
        limits,
        clock,
        admin: Arc::new(OnceCell::new()),
    };
    Ok((app, Running { shutdown, handle }))
}

/// A further server of the same deployment, started by a test (see [`TestApp::another_node`]).
pub struct Node {
    running: Running,
}

impl Node {
    pub async fn stop(self) {
        if let Err(problem) = self.running.stop().await {
            panic!("second node: {problem}");
        }
    }
}

impl TestApp {
    /// Another node on the same database, with this node's configuration (so the same Redis
    /// and key prefix, if any) adjusted by `configure`. Stop it before the test ends.
    pub async fn another_node(&self, configure: impl FnOnce(&mut Config)) -> (TestApp, Node) {
        let mut config = (*self.state.config).clone();
        config.http_addr = "127.0.0.1:0".parse().expect("socket address");
        configure(&mut config);
        // One deployment, one time: the nodes share the test's clock.
        let clock = self.clock.clone();
        let (app, running) = start(config, self.backend, self.database_url.clone(), clock)
            .await
            .unwrap_or_else(|e| panic!("second node failed to start: {e:#}"));
        let app = TestApp {
            admin: self.admin.clone(),
            ..app
        };
        (app, Node { running })
    }
}
