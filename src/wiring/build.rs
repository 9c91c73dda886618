//! Building one node: every part constructed once, in dependency order, from the
//! configuration.

use crate::app::accounts::Accounts;
use crate::app::catalog::Catalog;
use crate::app::coupons::Coupons;
use crate::app::dead_letters::DeadLetters;
use crate::app::fulfilment::Fulfilment;
use crate::app::jobs::Jobs;
use crate::app::operations::Operations;
use crate::app::orders::Orders;
use crate::app::payments::{PaymentSettings, Payments};
use crate::app::placement::lock::{LockConfig, LockPlacement};
use crate::app::placement::waiting_room::RoomConfig;
use crate::app::placement::{Placement, PlacementConfig};
use crate::app::points::Points;
use crate::app::settlement::Settlement;
use crate::app::waitlist::{Offers, Signal, Waitlists};
use crate::app::App;
use crate::auth::AuthService;
use crate::clock::{Clock, SharedClock};
use crate::cluster::Cluster;
use crate::config::{Config, PaymentGateway as GatewayChoice, PlacementStrategy, Secret};
use crate::domain::settlement::SettlementCalendar;
use crate::domain::Timestamp;
use crate::events::{DispatchProgress, Dispatcher, EventSync, Hub, Subscriber};
use crate::http::rendered::RenderedCache;
use crate::http::streams::StreamLimits;
use crate::http::{AppState, Shared};
use crate::jobs::dead_letters::DlqRetryJob;
use crate::jobs::handlers;
use crate::jobs::operations::{HeartbeatJob, StockGaugesJob};
use crate::jobs::points::{EarnJob, EarnQueue, ExpiryJob};
use crate::jobs::reconcile::ReconcileJob;
use crate::jobs::refunds::RefundRetryJob;
use crate::jobs::settlement::SettlementJob;
use crate::jobs::sweeper::Sweeper;
use crate::jobs::verify::VerifyJob;
use crate::jobs::waitlist::WaitlistJob;
use crate::jobs::Scheduler;
use crate::metrics::Metrics;
use crate::payment::webhook::WebhookSecret;
use crate::payment::{
    BreakerSettings, CircuitBreaker, GuardedGateway, PaymentGateway, PortOneGateway,
    PortOneSettings, SimulatedGateway,
};
use crate::store::{self, PoolOptions, Store};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const JWT_SECRET_SETTING: &str = "jwt_secret";
/// Bytes of a generated signing secret (256 bits).
const GENERATED_SECRET_BYTES: usize = 32;

/// A node, built: the state handlers share and the background tasks it runs.
pub(super) struct Node {
    pub state: AppState,
    pub tasks: Vec<JoinHandle<()>>,
}

/// What most parts are built from.
struct Parts {
    config: Arc<Config>,
    clock: SharedClock,
    store: Arc<dyn Store>,
    auth: Arc<AuthService>,
    metrics: Arc<Metrics>,
    cluster: Cluster,
    events: EventSync,
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(config: &Config, clock: &dyn Clock) -> anyhow::Result<Arc<dyn Store>> {
    let options = PoolOptions {
        max_connections: config.db_max_connections,
        acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
    };
    let store = store::open::connect(config.database_url.expose(), &options)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                crate::config::redact_url(config.database_url.expose())
            )
        })?;
    store
        .migrate(clock.now())
        .await
        .context("migrating the database")?;
    Ok(store)
}

/// The signing secret comes from configuration or, when unset, from the database (created
/// once), so that every node and every CLI command on one database agrees.
pub async fn auth_service(
    store: &dyn Store,
    config: &Config,
    clock: SharedClock,
) -> anyhow::Result<AuthService> {
    let secret = match &config.jwt_secret {
        Some(secret) => secret.expose().to_owned(),
        None => {
            let candidate = crate::auth::random_token(GENERATED_SECRET_BYTES);
            store
                .setting_or_insert(JWT_SECRET_SETTING, &candidate)
                .await?
        }
    };
    let now = clock.now();
    let auth = AuthService::new(
        secret.as_bytes(),
        config.access_token_ttl_secs,
        config.refresh_token_ttl_secs,
        clock,
    )
    .with_hash_concurrency(config.password_hash_permits());
    let far_future = now.plus_secs(config.access_token_ttl_secs);
    for jti in store.revoked_tokens(now).await? {
        auth.denylist.insert(jti, far_future);
    }
    for (session_id, revoked_at) in store
        .revoked_sessions(auth.revoked_sessions_since(now))
        .await?
    {
        auth.revoke_session(session_id, revoked_at);
    }
    Ok(auth)
}

/// The parts, and the dispatcher's progress that only a serving node uses.
async fn parts(config: Config, clock: SharedClock) -> anyhow::Result<(Parts, DispatchProgress)> {
    let store = open_store(&config, clock.as_ref()).await?;
    let auth = Arc::new(auth_service(store.as_ref(), &config, clock.clone()).await?);
    let metrics = Arc::new(Metrics::default());
    let cluster = Cluster::build(&config, metrics.clone(), auth.clone(), clock.clone())?;
    let (events, progress) = EventSync::new(store.clone());
    let parts = Parts {
        config: Arc::new(config),
        clock,
        store,
        auth,
        metrics,
        cluster,
        events,
    };
    Ok((parts, progress))
}

/// Builds a node: `workers` says whether it runs the consumer workers (with Kafka).
pub(super) async fn node(
    config: Config,
    clock: SharedClock,
    workers: bool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Node> {
    let (parts, progress) = parts(config, clock).await?;
    if parts.config.payment_gateway == GatewayChoice::Simulated {
        tracing::warn!(
            "payment_gateway=simulated: payments are simulated and move no money; \
             set STAMPEDE_PAYMENT_GATEWAY=portone to take real payments"
        );
    }
    // Unique per process: the leases tell nodes apart by it.
    let holder = format!("node-{}", crate::auth::random_token(12));
    let placement = placement(&parts, Some(holder.clone()), shutdown.clone()).await?;
    let signal = Arc::new(Signal::default());
    let app = app(&parts, &holder, placement, signal.clone())?;
    seed_gate(&parts, &app).await?;
    let hub = Arc::new(Hub::default());
    // The once-per-cluster work: fed by this node's dispatcher, or, with Kafka, by the
    // consumer groups (`kafka`).
    let in_process = parts.config.kafka_brokers.is_none();
    let earn_queue = in_process.then(|| Arc::new(EarnQueue::default()));
    let mut subscribers: Vec<Arc<dyn Subscriber>> = Vec::new();
    if let Some(queue) = &earn_queue {
        subscribers.extend([signal.clone() as Arc<dyn Subscriber>, queue.clone()]);
    }
    let dispatcher = dispatcher(&parts, hub.clone(), progress, subscribers);
    let mut tasks = vec![tokio::spawn(dispatcher.run(shutdown.clone()))];
    let scheduler = scheduler(&parts, &app, signal, earn_queue, holder.clone());
    tasks.extend(scheduler.spawn(shutdown.clone()));
    tasks.extend(parts.cluster.start(shutdown.clone()).await);
    tasks.extend(kafka(&parts, &app, holder, workers, shutdown.clone()).await?);
    let streams = StreamLimits::new(
        parts.config.streams_per_user_max,
        Duration::from_secs(parts.config.stream_max_age_secs),
        parts.metrics.clone(),
    );
    let state = AppState::new(Shared {
        app,
        streams,
        rendered: RenderedCache::new(parts.config.redis_url.is_none()),
        config: parts.config,
        clock: parts.clock,
        store: parts.store,
        auth: parts.auth,
        metrics: parts.metrics,
        cluster: parts.cluster,
        events: parts.events,
        hub,
        shutdown,
    });
    Ok(Node { state, tasks })
}

/// Without Redis, this node's gate is the only one it has: it remembers the attempts placed
/// in the last hour, so a retry after a restart replays its order instead of being refused
/// as sold out; it vouches for that memory only while no other node is seen (`LocalGate`).
async fn seed_gate(parts: &Parts, app: &App) -> anyhow::Result<()> {
    use crate::cluster::gate::{attempt_key, ATTEMPT_MEMORY_MAX, ATTEMPT_MEMORY_SECS};
    if parts.config.redis_url.is_some() {
        return Ok(());
    }
    let gate = &parts.cluster.local_gate;
    app.operations.notice_others().await?;
    let memory_ms = i64::try_from(ATTEMPT_MEMORY_SECS * 1000).unwrap_or(i64::MAX);
    let since = Timestamp::from_millis(parts.clock.now().millis().saturating_sub(memory_ms));
    let max = i64::try_from(ATTEMPT_MEMORY_MAX / 2).unwrap_or(i64::MAX);
    let placed = parts.store.recent_attempts(since, max).await?;
    gate.seed(placed.iter().map(|(user, key)| attempt_key(*user, key)));
    Ok(())
}

/// The use cases exactly as [`node`] builds them (so with the same event handlers), and
/// the store, for an operator's command: no dispatcher, jobs, relay, workers or cluster
/// links. Only the placement writers run, until `shutdown`. The waitlist handler's signal
/// wakes nothing here: the serving nodes' offer pass also runs on its timer.
pub(super) async fn operator(
    config: Config,
    clock: SharedClock,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(App, Arc<dyn Store>)> {
    let (parts, _progress) = parts(config, clock).await?;
    // An operator's command admits no waiting-room tickets: the serving nodes do.
    let placement = placement(&parts, None, shutdown).await?;
    let app = app(&parts, "operator", placement, Arc::new(Signal::default()))?;
    Ok((app, parts.store))
}

/// The batching writers, and the seeds' lock baseline when configured; the waiting room's
/// pump when `holder` names the node.
async fn placement(
    parts: &Parts,
    holder: Option<String>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Placement> {
    let config = &parts.config;
    let lock = match (config.placement_strategy, &config.redis_url) {
        (PlacementStrategy::Lock, Some(url)) => {
            let lock_config = LockConfig {
                wait: Duration::from_millis(config.lock_wait_ms),
                lease: Duration::from_millis(config.lock_lease_ms),
                retry: Duration::from_millis(config.lock_retry_ms),
                hold_ttl_secs: config.hold_ttl_secs,
            };
            let placement = LockPlacement::connect(
                parts.store.clone(),
                parts.clock.clone(),
                url.expose(),
                &config.redis_prefix,
                lock_config,
                parts.metrics.clone(),
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
    let placement_config = PlacementConfig {
        batch_max: config.placement_batch_max,
        linger: Duration::from_millis(config.placement_linger_ms),
        queue_depth: config.placement_queue_depth,
        writers: config.placement_writers,
        hold_ttl_secs: config.hold_ttl_secs,
        room: RoomConfig {
            depth: config.waiting_room_depth,
            ticket_ttl: Duration::from_secs(config.waiting_room_ticket_ttl_secs),
            lease: Duration::from_millis(config.waiting_room_lease_ms),
            poll: Duration::from_millis(config.waiting_room_poll_ms),
        },
        grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    Ok(Placement::start(
        parts.store.clone(),
        parts.clock.clone(),
        placement_config,
        parts.cluster.gate.clone(),
        parts.metrics.clone(),
        parts.events.clone(),
        (holder, shutdown),
        lock,
    ))
}

/// `node`: this node's name, as its leases and heartbeat know it.
fn app(
    parts: &Parts,
    node: &str,
    placement: Placement,
    signal: Arc<Signal>,
) -> anyhow::Result<App> {
    let config = &parts.config;
    let calendar = SettlementCalendar::new(&config.settlement_timezone, &config.settlement_at)
        .context("settlement calendar")?;
    let (gateway, settings) = gateway(config)?;
    // Every call through one breaker; its timeout a little over the client's own, so a
    // slow gateway shows as the client's timeout (both count as failures).
    let breaker = CircuitBreaker::new(
        BreakerSettings {
            call_timeout_ms: config.payment_timeout_ms.saturating_add(100),
            ..BreakerSettings::default()
        },
        parts.clock.clone(),
        parts.metrics.clone(),
    );
    let gateway: Arc<dyn PaymentGateway> = Arc::new(GuardedGateway::new(gateway, breaker));
    let payments = Arc::new(Payments {
        store: parts.store.clone(),
        gateway,
        clock: parts.clock.clone(),
        metrics: parts.metrics.clone(),
        events: parts.events.clone(),
        settings,
    });
    let points = Arc::new(Points {
        store: parts.store.clone(),
        clock: parts.clock.clone(),
        metrics: parts.metrics.clone(),
        events: parts.events.clone(),
        earn_rate_bps: parts.config.points_earn_rate_bps,
        valid_days: parts.config.points_valid_days,
    });
    let handlers = handlers::all(points.clone(), payments.clone(), signal.clone());
    Ok(App {
        accounts: Accounts {
            store: parts.store.clone(),
            auth: parts.auth.clone(),
            clock: parts.clock.clone(),
            revocations: parts.cluster.revocations.clone(),
            events: parts.events.clone(),
            attempts: parts.cluster.attempts.clone(),
            metrics: parts.metrics.clone(),
        },
        catalog: Catalog {
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            events: parts.events.clone(),
            listing: parts.cluster.listing.clone(),
            batch_max: config.catalog_batch_max,
        },
        operations: Arc::new(Operations::new(
            parts.store.clone(),
            parts.clock.clone(),
            parts.metrics.clone(),
            node.to_owned(),
            config.redis_url.is_some(),
            parts.cluster.local_gate.clone(),
        )),
        orders: Arc::new(Orders {
            store: parts.store.clone(),
            placement,
            payments: payments.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
            events: parts.events.clone(),
        }),
        fulfilment: Fulfilment {
            store: parts.store.clone(),
            payments: payments.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
            events: parts.events.clone(),
        },
        payments,
        coupons: Arc::new(Coupons::new(
            parts.store.clone(),
            parts.cluster.coupons.clone(),
            parts.clock.clone(),
            parts.metrics.clone(),
            parts.events.clone(),
        )),
        points,
        dead_letters: Arc::new(DeadLetters {
            store: parts.store.clone(),
            handlers,
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
        }),
        waitlists: Waitlists {
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
            signal,
            events: parts.events.clone(),
        },
        settlement: Arc::new(Settlement {
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            events: parts.events.clone(),
            calendar,
        }),
        jobs: Jobs::new(parts.store.clone()),
    })
}

/// The configured payment gateway, and how payments meet it.
fn gateway(config: &Config) -> anyhow::Result<(Arc<dyn PaymentGateway>, PaymentSettings)> {
    match config.payment_gateway {
        GatewayChoice::Simulated => {
            let settings = PaymentSettings {
                store_id: "simulated".into(),
                simulated: true,
                webhook_secret: None,
            };
            Ok((Arc::new(SimulatedGateway), settings))
        }
        GatewayChoice::Portone => {
            // `Config::validate` made sure both are set.
            let store_id = config.portone_store_id.clone().unwrap_or_default();
            let api_secret = config.portone_api_secret.as_ref();
            let portone = PortOneSettings {
                api_url: config.portone_api_url.clone(),
                api_secret: api_secret
                    .map(|s| s.expose().to_owned())
                    .unwrap_or_default(),
                store_id: store_id.clone(),
                timeout: Duration::from_millis(config.payment_timeout_ms),
            };
            let gateway = PortOneGateway::new(&portone).map_err(anyhow::Error::msg)?;
            // `Config::validate` made sure it is set; its shape is checked here.
            let raw = config.portone_webhook_secret.as_ref().map(Secret::expose);
            let webhook_secret = WebhookSecret::parse(raw.unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("portone_webhook_secret {}", e.requirement()))?;
            let settings = PaymentSettings {
                store_id,
                simulated: false,
                webhook_secret: Some(webhook_secret),
            };
            Ok((Arc::new(gateway), settings))
        }
    }
}

fn dispatcher(
    parts: &Parts,
    hub: Arc<Hub>,
    progress: DispatchProgress,
    subscribers: Vec<Arc<dyn Subscriber>>,
) -> Dispatcher {
    Dispatcher {
        store: parts.store.clone(),
        hub,
        cluster: parts.cluster.clone(),
        auth: parts.auth.clone(),
        metrics: parts.metrics.clone(),
        clock: parts.clock.clone(),
        subscribers,
        progress,
        poll: Duration::from_millis(parts.config.outbox_poll_ms),
    }
}

fn scheduler(
    parts: &Parts,
    app: &App,
    signal: Arc<Signal>,
    earn_queue: Option<Arc<EarnQueue>>,
    holder: String,
) -> Scheduler {
    let config = &parts.config;
    let mut scheduler = Scheduler::new(parts.store.clone(), parts.clock.clone(), holder)
        .counting(parts.metrics.clone());
    scheduler.add(Arc::new(HeartbeatJob {
        operations: app.operations.clone(),
        orders: app.orders.clone(),
    }));
    scheduler.add(Arc::new(StockGaugesJob {
        operations: app.operations.clone(),
    }));
    scheduler.add(Arc::new(Sweeper {
        orders: app.orders.clone(),
        events: parts.events.clone(),
        interval: Duration::from_millis(config.sweeper_interval_ms),
        batch_max: config.sweeper_batch_max,
        auto_confirm_after_secs: config.auto_confirm_after_secs,
    }));
    let offers = Offers {
        store: parts.store.clone(),
        clock: parts.clock.clone(),
        metrics: parts.metrics.clone(),
        signal,
        events: parts.events.clone(),
        offer_ttl_secs: config.waitlist_offer_ttl_secs,
    };
    scheduler.add(Arc::new(WaitlistJob {
        offers: Arc::new(offers),
        interval: Duration::from_millis(config.waitlist_interval_ms),
    }));
    if let Some(queue) = earn_queue {
        scheduler.add(Arc::new(EarnJob {
            points: app.points.clone(),
            queue,
        }));
    }
    // Without Kafka nothing consumes `payment.refund_failed`: this job does, in its place.
    if config.kafka_brokers.is_none() {
        scheduler.add(Arc::new(RefundRetryJob::new(
            app.payments.clone(),
            parts.metrics.clone(),
            Duration::from_secs(config.refund_retry_interval_secs),
            config.consumer_max_attempts,
        )));
    }
    scheduler.add(Arc::new(ExpiryJob {
        points: app.points.clone(),
        interval: Duration::from_secs(config.points_expiry_interval_secs),
    }));
    scheduler.add(Arc::new(DlqRetryJob {
        dead_letters: app.dead_letters.clone(),
        interval: Duration::from_secs(config.dlq_retry_interval_secs),
        max_retries: config.dlq_retry_max,
    }));
    scheduler.add(Arc::new(SettlementJob {
        settlement: app.settlement.clone(),
    }));
    scheduler.add(Arc::new(VerifyJob::new(
        parts.store.clone(),
        parts.metrics.clone(),
        Duration::from_secs(config.verify_interval_secs),
    )));
    scheduler.add(Arc::new(ReconcileJob {
        payments: app.payments.clone(),
        interval: Duration::from_secs(config.payment_reconcile_interval_secs),
    }));
    app.jobs.register(scheduler.scheduled());
    scheduler
}

/// With Kafka (`kafka_brokers`): the outbox relay (one node at a time holds its lease), and
/// this node's consumer workers when `workers`.
#[cfg(feature = "kafka")]
async fn kafka(
    parts: &Parts,
    app: &App,
    holder: String,
    workers: bool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    use crate::events::kafka::{KafkaSettings, Relay, Workers};
    let config = &parts.config;
    let Some(brokers) = &config.kafka_brokers else {
        return Ok(Vec::new());
    };
    let partitions = crate::config::partitions::TopicPartitions::parse(&config.kafka_partitions)
        .map_err(|e| anyhow::anyhow!("kafka_partitions {e}"))?;
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        prefix: config.kafka_topic_prefix.clone(),
        partitions: partitions.named().to_vec(),
        other_partitions: partitions.others(),
    };
    // In the background, so that a node starts while the broker is away; the relay and the
    // workers create the topics they use when the broker is back.
    let creating = settings.clone();
    tokio::spawn(async move {
        if let Err(e) = creating.ensure_all_topics().await {
            tracing::warn!(error = %e, "could not create the Kafka topics at start");
        }
    });
    let relay = Relay {
        store: parts.store.clone(),
        settings: settings.clone(),
        clock: parts.clock.clone(),
        metrics: parts.metrics.clone(),
        holder,
        lease: Duration::from_millis(config.relay_lease_ms),
        poll: Duration::from_millis(config.relay_poll_ms),
        batch_max: config.relay_batch_max,
    };
    let mut tasks = vec![tokio::spawn(relay.run(shutdown.clone()))];
    if workers {
        let workers = Workers {
            store: parts.store.clone(),
            settings,
            handlers: app.dead_letters.handlers.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
            max_attempts: config.consumer_max_attempts,
            backoff: Duration::from_millis(config.consumer_backoff_ms),
        };
        tasks.extend(workers.start(shutdown).await?);
    }
    Ok(tasks)
}

/// Without the `kafka` feature there is nothing to start (the configuration refuses
/// `kafka_brokers` in such a build).
#[cfg(not(feature = "kafka"))]
async fn kafka(
    _parts: &Parts,
    _app: &App,
    _holder: String,
    _workers: bool,
    _shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    Ok(Vec::new())
}
