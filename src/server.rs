//! Wires the parts together: store, auth, placement writer, outbox dispatcher, sweeper,
//! waitlist worker, points earner and expiry job, and the HTTP router. `main` only parses
//! configuration and calls [`Server::bind`] and [`Server::run`]; tests do the same on
//! port 0.

use crate::auth::AuthService;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::outbox::{Dispatcher, EventSync, Hub};
use crate::payment::{PaymentGateway, SimulatedGateway};
use crate::placement::lock::{LockConfig, LockPlacement};
use crate::placement::{Placement, PlacementConfig};
use crate::store::{self, PoolOptions, Store};
use crate::sweeper::Sweeper;
use crate::waitlist::{Signal, WaitlistWorker};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

const JWT_SECRET_SETTING: &str = "jwt_secret";
/// Bytes of a generated signing secret (256 bits).
const GENERATED_SECRET_BYTES: usize = 32;

/// What every handler shares. Axum clones the state for each request (and each middleware
/// that reads it), so it is a single `Arc`: one atomic increment per clone, not a dozen.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<AuthService>,
    pub placement: Placement,
    pub gateway: Arc<dyn PaymentGateway>,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<Hub>,
    /// Wakes this node's outbox dispatcher right after a commit, instead of at its next poll.
    pub outbox_wake: Arc<Notify>,
    pub events: EventSync,
    /// What nodes share: gate, listing cache, rate limits, deny-list, wake-ups; in process
    /// or through Redis (chosen once, in [`Server::bind`]).
    pub cluster: Cluster,
    /// Flips to `true` when the server shuts down; live streams end on it.
    pub shutdown: watch::Receiver<bool>,
    /// Rendered bodies of the hottest public reads (see `http::rendered`).
    pub rendered: crate::http::rendered::RenderedCache,
    /// Wakes this node's waitlist worker (a buyer joined a line with units available).
    pub waitlist: Arc<Signal>,
    /// First-come coupon claims.
    pub coupons: Arc<crate::coupons::Coupons>,
}

pub struct Server {
    listener: TcpListener,
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let options = PoolOptions {
        max_connections: config.db_max_connections,
        acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
    };
    let store = store::open::connect(&config.database_url, &options)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                crate::config::redact_url(&config.database_url)
            )
        })?;
    store
        .migrate(Timestamp::now())
        .await
        .context("migrating the database")?;
    Ok(store)
}

/// The signing secret comes from configuration or, when unset, from the database (created
/// once), so that every node and every CLI command on one database agrees.
pub async fn auth_service(store: &dyn Store, config: &Config) -> anyhow::Result<AuthService> {
    let secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => {
            let candidate = crate::auth::random_token(GENERATED_SECRET_BYTES);
            store
                .setting_or_insert(JWT_SECRET_SETTING, &candidate)
                .await?
        }
    };
    let auth = AuthService::new(
        secret.as_bytes(),
        config.access_token_ttl_secs,
        config.refresh_token_ttl_secs,
    );
    let far_future = Timestamp::now().plus_secs(config.access_token_ttl_secs);
    for jti in store.revoked_tokens(Timestamp::now()).await? {
        auth.denylist.insert(jti, far_future);
    }
    Ok(auth)
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let store = open_store(&config).await?;
        let auth = Arc::new(auth_service(store.as_ref(), &config).await?);
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::default());
        let cluster = Cluster::build(&config, metrics.clone(), auth.clone())?;
        let outbox_wake = Arc::new(Notify::new());
        let waitlist = Arc::new(Signal::default());
        let (stop, shutdown) = watch::channel(false);
        let (cursor, cursor_rx) = watch::channel(0);
        let lock = match (config.placement_strategy.as_str(), &config.redis_url) {
            ("lock", Some(url)) => {
                let lock_config = LockConfig {
                    wait: Duration::from_millis(config.lock_wait_ms),
                    lease: Duration::from_millis(config.lock_lease_ms),
                    retry: Duration::from_millis(config.lock_retry_ms),
                    hold_ttl_secs: config.hold_ttl_secs,
                };
                let placement = LockPlacement::connect(
                    store.clone(),
                    url,
                    &config.redis_prefix,
                    lock_config,
                    metrics.clone(),
                );
                tracing::warn!("placement_strategy=lock: the seeds' baseline, for benchmarks only");
                Some(Arc::new(
                    placement
                        .await
                        .context("connecting the lock baseline to Redis")?,
                ))
            }
            _ => None,
        };
        let events = EventSync {
            store: store.clone(),
            wake: outbox_wake.clone(),
            cursor: cursor_rx,
        };
        let placement = Placement::start(
            store.clone(),
            PlacementConfig {
                batch_max: config.placement_batch_max,
                linger: Duration::from_millis(config.placement_linger_ms),
                queue_depth: config.placement_queue_depth,
                writers: config.placement_writers,
                hold_ttl_secs: config.hold_ttl_secs,
                waiting_room_depth: config.waiting_room_depth,
                ticket_ttl: Duration::from_secs(config.waiting_room_ticket_ttl_secs),
            },
            cluster.gate.clone(),
            metrics.clone(),
            events.clone(),
            shutdown.clone(),
            lock,
        );
        let earn_queue = Arc::new(crate::points::EarnQueue::default());
        let dispatcher = Dispatcher {
            store: store.clone(),
            hub: hub.clone(),
            cluster: cluster.clone(),
            auth: auth.clone(),
            metrics: metrics.clone(),
            waitlist: waitlist.clone(),
            points: earn_queue.clone(),
            wake: outbox_wake.clone(),
            poll: Duration::from_millis(config.outbox_poll_ms),
            cursor,
        };
        let sweeper = Sweeper {
            store: store.clone(),
            metrics: metrics.clone(),
            outbox_wake: outbox_wake.clone(),
            interval: Duration::from_millis(config.sweeper_interval_ms),
            batch_max: config.sweeper_batch_max,
            auto_confirm_after_secs: config.auto_confirm_after_secs,
        };
        let waitlist_worker = WaitlistWorker {
            store: store.clone(),
            metrics: metrics.clone(),
            signal: waitlist.clone(),
            outbox_wake: outbox_wake.clone(),
            interval: Duration::from_millis(config.waitlist_interval_ms),
            offer_ttl_secs: config.waitlist_offer_ttl_secs,
        };
        let earner = crate::points::Earner {
            store: store.clone(),
            metrics: metrics.clone(),
            queue: earn_queue,
            outbox_wake: outbox_wake.clone(),
            rate_bps: config.points_earn_rate_bps,
            valid_days: config.points_valid_days,
        };
        let points_expiry = crate::points::ExpiryJob {
            store: store.clone(),
            metrics: metrics.clone(),
            outbox_wake: outbox_wake.clone(),
            interval: Duration::from_secs(config.points_expiry_interval_secs),
            // Unique per process: the lease tells nodes apart by it.
            holder: format!("node-{}", crate::auth::random_token(12)),
        };
        let mut tasks = vec![
            tokio::spawn(dispatcher.run(shutdown.clone())),
            tokio::spawn(sweeper.run(shutdown.clone())),
            tokio::spawn(waitlist_worker.run(shutdown.clone())),
            tokio::spawn(earner.run(shutdown.clone())),
            tokio::spawn(points_expiry.run(shutdown.clone())),
        ];
        tasks.extend(cluster.start(shutdown.clone()).await);
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding {}", config.http_addr))?;
        let coupons = Arc::new(crate::coupons::Coupons::new(
            store.clone(),
            cluster.coupons.clone(),
            metrics.clone(),
        ));
        let state = AppState(Arc::new(Shared {
            rendered: crate::http::rendered::RenderedCache::new(config.redis_url.is_none()),
            config: Arc::new(config),
            store,
            auth,
            placement,
            gateway: Arc::new(SimulatedGateway),
            metrics,
            hub,
            outbox_wake,
            events,
            cluster,
            shutdown,
            waitlist,
            coupons,
        }));
        Ok(Server {
            listener,
            state,
            stop,
            tasks,
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
        let app = crate::http::router(state);
        // The client's address feeds the per-IP rate limit.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
        .context("serving HTTP")?;
        for task in tasks {
            let _ = task.await;
        }
        store.close().await;
        Ok(())
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
