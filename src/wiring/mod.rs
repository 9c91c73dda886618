//! Wires the parts together: the store, the clock, auth, what nodes share, the event
//! dispatcher, the use cases, the jobs and the HTTP router. `main` and `cli` only parse
//! configuration and call [`Server::bind`] and [`Server::run`]; tests do the same on port 0,
//! with a clock of their own ([`Server::bind_with_clock`]). An operator's command that needs
//! the use cases themselves (a dead-letter replay runs the node's handlers) takes an
//! [`OperatorApp`]. Nothing else imports this module.

mod build;

pub use build::{auth_service, open_store};

use crate::app::placement::Placement;
use crate::app::App;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Workers};
use crate::http::AppState;
use crate::store::Store;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Server {
    listener: TcpListener,
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Server::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Server::bind`], on the given clock: tests move a `ManualClock` past deadlines
    /// instead of waiting for them.
    pub async fn bind_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Server> {
        config.validate()?;
        let (stop, shutdown) = watch::channel(false);
        let workers = config.workers == Workers::On;
        let node = build::node(config, clock, workers, shutdown).await?;
        let listener = TcpListener::bind(node.state.config.http_addr)
            .await
            .with_context(|| format!("binding {}", node.state.config.http_addr))?;
        Ok(Server {
            listener,
            state: node.state,
            stop,
            tasks: node.tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.http_addr)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish, ends live
    /// streams and background tasks, and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            state,
            stop,
            tasks,
        } = self;
        let store = state.store.clone();
        let operations = state.app.operations.clone();
        let placement = state.app.orders.placement.clone();
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let app = crate::http::router(state);
        // The client's address feeds the per-IP rate limit.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            drain(&placement, grace).await;
            let _ = stop.send(true);
        })
        .await
        .context("serving HTTP")?;
        for task in tasks {
            let _ = task.await;
        }
        operations.leave().await;
        store.close().await;
        Ok(())
    }
}

/// A node's use cases for a command at the operator's shell, built from the configuration
/// as `serve` builds them (the same store, handlers and settings), serving nothing and
/// running no background work. [`OperatorApp::close`] it when done.
pub struct OperatorApp {
    pub app: App,
    store: Arc<dyn Store>,
    stop: watch::Sender<bool>,
}

impl OperatorApp {
    pub async fn open(config: Config) -> anyhow::Result<OperatorApp> {
        config.validate()?;
        let (stop, shutdown) = watch::channel(false);
        let (app, store) = build::operator(config, Arc::new(SystemClock), shutdown).await?;
        Ok(OperatorApp { app, store, stop })
    }

    /// The store the use cases work on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops the placement writers and closes the database.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        drop(self.app);
        self.store.close().await;
    }
}

/// `stampede worker`: a node without the HTTP API that runs the consumer workers (and
/// everything else a node runs in the background: the relay when it holds the lease, the
/// scheduled jobs) until `shutdown` completes.
pub async fn work(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    anyhow::ensure!(
        config.kafka_brokers.is_some(),
        "stampede worker consumes from Kafka: set STAMPEDE_KAFKA_BROKERS"
    );
    let (stop, stopping) = watch::channel(false);
    let node = build::node(config, Arc::new(SystemClock), true, stopping).await?;
    let grace = Duration::from_secs(node.state.config.shutdown_grace_secs);
    shutdown.await;
    drain(&node.state.app.orders.placement, grace).await;
    let _ = stop.send(true);
    for task in node.tasks {
        let _ = task.await;
    }
    node.state.app.operations.leave().await;
    node.state.store.close().await;
    Ok(())
}

/// The first step of stopping: new orders are refused (503 `shutting_down`, and `/readyz`
/// says so) while everything else is still served, until the attempts this node accepted
/// are decided or `grace` has passed. Tickets still waiting stay in the store for the other
/// nodes (or this one, restarted).
async fn drain(placement: &Placement, grace: Duration) {
    placement.drain();
    let deadline = tokio::time::Instant::now() + grace;
    while !placement.is_idle() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !placement.is_idle() {
        tracing::warn!(
            "stopping with undecided attempts: their tickets are placed again by the next node"
        );
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
