//! What operators watch during a drop (issue 13): the operations page's snapshot
//! (`GET /api/v1/admin/dashboard`), the nodes' heartbeats it is built from, and the stock
//! gauges of the products in play.
//!
//! Each node writes a heartbeat every second (`jobs::operations`) carrying a few of its own
//! metric samples — the order funnel, refusals by reason, waiting-room and payment counters,
//! the order endpoint's latency histogram, what it sees of Redis and the broker. Any node
//! answers the page: it sums the samples of the nodes alive, and reads the state that lives
//! in the database (stock, campaigns, the waiting line, dead letters) with bounded queries.
//! Counters are cumulative; the page derives rates from successive snapshots.

pub mod samples;

use super::error::{require, AppResult};
use crate::clock::SharedClock;
use crate::cluster::gate::LocalGate;
use crate::domain::{Actor, Role, Timestamp};
use crate::metrics::{DependencyLabels, Metrics, ProductLabels};
use crate::store::{ProductInPlay, Store, StoreResult};
use samples::{count, Sample, Totals};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// A node is alive while its last heartbeat is at most this old.
const ALIVE_FOR: Duration = Duration::from_secs(10);
/// A node's row is deleted once it has not been seen for this long.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Products in play: stock moved in the last hour among the newest movements …
const MOVED_WITHIN: Duration = Duration::from_secs(3600);
const RECENT_MOVEMENTS: i64 = 20_000;
/// … or released within a day either side of now.
const RELEASED_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// Rows on the page, and series of the stock gauges.
const PAGE_PRODUCTS: i64 = 50;
const GAUGE_PRODUCTS: i64 = 100;
const PAGE_CAMPAIGNS: i64 = 20;
/// Viewers polling together share one snapshot this fresh.
const SNAPSHOT_REUSED_FOR: Duration = Duration::from_millis(500);
/// The route whose latency the page shows.
const ORDER_ROUTE: &str = "/api/v1/orders";

/// The metric families a node publishes in its heartbeat.
const PUBLISHED: &[&str] = &[
    "orders_attempted_total",
    "orders_placed_total",
    "orders_paid_total",
    "orders_confirmed_total",
    "orders_cancelled_total",
    "orders_rejected_total",
    "waiting_room_entered_total",
    "waiting_room_admitted_total",
    "waiting_room_full_total",
    "payments_total",
    "outbox_lag_events",
    "relay_active",
    "relay_lag_events",
    "dependency_up",
];
const LATENCY: &str = "http_request_duration_seconds";

pub struct Operations {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// This node's id (its lease holder name) and start.
    pub node: String,
    pub started_at: Timestamp,
    /// Which dependencies this node is configured with: the others show as `off`.
    pub redis: bool,
    /// Told when another node is seen: its attempts are not in this gate's memory.
    gate: Arc<LocalGate>,
    snapshot: Mutex<Option<(Instant, Arc<Dashboard>)>>,
    /// Products whose stock gauges this node exports.
    gauged: Mutex<HashSet<i64>>,
}

impl Operations {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        node: String,
        redis: bool,
        gate: Arc<LocalGate>,
    ) -> Operations {
        Operations {
            started_at: clock.now(),
            store,
            clock,
            metrics,
            node,
            redis,
            gate,
            snapshot: Mutex::new(None),
            gauged: Mutex::new(HashSet::new()),
        }
    }

    /// Writes this node's heartbeat with its published samples, and tells the gate when
    /// another node is alive.
    pub async fn beat(&self, draining: bool) -> StoreResult<()> {
        if self.redis {
            let up = self.metrics.redis_up.get();
            self.dependency("redis").set(up);
        }
        let stats = serde_json::to_string(&self.published()).unwrap_or_else(|_| "[]".into());
        let now = self.clock.now();
        let beat = crate::store::NodeBeat {
            id: self.node.clone(),
            started_at: self.started_at,
            seen_at: now,
            draining,
            stats,
        };
        let written = self.store.beat(&beat, before(now, FORGOTTEN_AFTER)).await;
        self.dependency("database").set(i64::from(written.is_ok()));
        written?;
        self.notice_others().await
    }

    /// A stopping node leaves the list at once (its jobs have stopped): a node started
    /// next in its place finds itself alone.
    pub async fn leave(&self) {
        if let Err(e) = self.store.forget_node(&self.node).await {
            tracing::warn!(error = %e, "removing this node's heartbeat failed");
        }
    }

    /// When a node other than this one has a recent heartbeat, this node's gate no longer
    /// vouches for its memory of attempts (`cluster::gate::LocalGate::not_alone`).
    pub async fn notice_others(&self) -> StoreResult<()> {
        let now = self.clock.now();
        let nodes = self.store.nodes().await?;
        if nodes
            .iter()
            .any(|n| n.id != self.node && is_alive(n.seen_at, now))
        {
            self.gate.not_alone();
        }
        Ok(())
    }

    fn dependency(&self, dependency: &'static str) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .dependency_up
            .get_or_create(&DependencyLabels { dependency })
            .clone()
    }

    fn published(&self) -> Vec<Sample> {
        samples::parse(&self.metrics.encode(), |s| {
            PUBLISHED.contains(&s.name.as_str())
                || (s.name.starts_with(LATENCY)
                    && s.label("route") == Some(ORDER_ROUTE)
                    && s.label("method") == Some("POST"))
        })
    }

    /// Sets the stock gauges of the products in play, and drops the series of those that
    /// left play; counts the nodes alive.
    pub async fn refresh_gauges(&self) -> StoreResult<()> {
        let now = self.clock.now();
        let products = self.products_in_play(now, GAUGE_PRODUCTS).await?;
        let ids: HashSet<i64> = products.iter().map(|p| p.id).collect();
        let m = &self.metrics;
        for p in &products {
            let labels = ProductLabels { product_id: p.id };
            m.stock_on_hand.get_or_create(&labels).set(p.on_hand);
            m.stock_held.get_or_create(&labels).set(p.held);
            m.stock_available
                .get_or_create(&labels)
                .set(p.on_hand - p.held);
            m.stock_sold.get_or_create(&labels).set(p.sold);
        }
        {
            let mut gauged = self.gauged.lock().unwrap_or_else(|e| e.into_inner());
            for gone in gauged.difference(&ids) {
                let labels = ProductLabels { product_id: *gone };
                m.stock_on_hand.remove(&labels);
                m.stock_held.remove(&labels);
                m.stock_available.remove(&labels);
                m.stock_sold.remove(&labels);
            }
            *gauged = ids;
        }
        let alive = self.store.nodes().await?;
        let alive = alive.iter().filter(|n| is_alive(n.seen_at, now)).count();
        m.nodes_alive.set(i64::try_from(alive).unwrap_or(i64::MAX));
        Ok(())
    }

    async fn products_in_play(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<ProductInPlay>> {
        let released = (before(now, RELEASED_WITHIN), after(now, RELEASED_WITHIN));
        self.store
            .products_in_play(before(now, MOVED_WITHIN), RECENT_MOVEMENTS, released, limit)
            .await
    }

    /// The operations page's snapshot: admins only.
    pub async fn dashboard(&self, actor: &Actor) -> AppResult<Arc<Dashboard>> {
        require(actor, &[Role::Admin])?;
        if let Some((at, snapshot)) = &*self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < SNAPSHOT_REUSED_FOR {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = Arc::new(self.build().await?);
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    async fn build(&self) -> StoreResult<Dashboard> {
        let now = self.clock.now();
        let nodes = self.store.nodes().await?;
        let mut totals = Totals::default();
        let mut views = Vec::new();
        let mut relay_lag = 0;
        let mut outbox_pending = 0;
        let mut health = DashboardHealth::default();
        for node in &nodes {
            let alive = is_alive(node.seen_at, now);
            views.push(DashboardNode {
                id: node.id.clone(),
                started_at: node.started_at.millis(),
                seen_at: node.seen_at.millis(),
                draining: node.draining,
                alive,
            });
            if !alive {
                continue;
            }
            let published: Vec<Sample> = serde_json::from_str(&node.stats).unwrap_or_default();
            let gauge = |name: &str| {
                let found = published.iter().find(|s| s.name == name);
                found.map_or(0, |s| count(s.value))
            };
            outbox_pending = outbox_pending.max(gauge("outbox_lag_events"));
            if gauge("relay_active") == 1 {
                relay_lag = relay_lag.max(gauge("relay_lag_events"));
            }
            for sample in &published {
                if sample.name == "dependency_up" {
                    health.see(sample.label("dependency"), sample.value > 0.5);
                } else {
                    totals.add(sample);
                }
            }
        }
        // This node answers: the database did (its nodes were just read).
        health.database = "up";
        let products = self.products_in_play(now, PAGE_PRODUCTS).await?;
        let campaigns = self
            .store
            .campaigns_in_play(before(now, RELEASED_WITHIN), now, PAGE_CAMPAIGNS)
            .await?;
        let line = self.store.waiting_line().await?;
        let dead_letters = self.store.open_dead_letters().await?;
        Ok(Dashboard {
            at: now.millis(),
            products: products.into_iter().map(DashboardProduct::from).collect(),
            orders: DashboardOrders {
                attempted: count(totals.sum("orders_attempted_total")),
                placed: count(totals.sum("orders_placed_total")),
                paid: count(totals.sum("orders_paid_total")),
                confirmed: count(totals.sum("orders_confirmed_total")),
                cancelled: count(totals.sum("orders_cancelled_total")),
                refused: totals.by("orders_rejected_total", "reason"),
            },
            waiting_room: DashboardWaitingRoom {
                waiting: line.waiting,
                entered: count(totals.sum("waiting_room_entered_total")),
                admitted: count(totals.sum("waiting_room_admitted_total")),
                full: count(totals.sum("waiting_room_full_total")),
            },
            coupons: campaigns
                .into_iter()
                .map(|c| DashboardCampaign {
                    id: c.id,
                    name: c.name,
                    issued: c.issued,
                    total: c.total,
                })
                .collect(),
            payments: totals.by("payments_total", "reason"),
            events: DashboardEvents {
                outbox_pending,
                relay_lag_events: relay_lag,
                dead_letters,
            },
            latency: latency(&totals),
            nodes: views,
            health,
        })
    }
}

fn is_alive(seen_at: Timestamp, now: Timestamp) -> bool {
    seen_at.millis() >= before(now, ALIVE_FOR).millis()
}

fn before(now: Timestamp, span: Duration) -> Timestamp {
    let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.millis().saturating_sub(span))
}

fn after(now: Timestamp, span: Duration) -> Timestamp {
    let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.millis().saturating_add(span))
}

/// The order endpoint's histogram summed over nodes, buckets in ascending order.
fn latency(totals: &Totals) -> DashboardLatency {
    let mut buckets: Vec<LatencyBucket> = Vec::new();
    for (labels, value) in totals.series("http_request_duration_seconds_bucket") {
        let le = labels
            .iter()
            .find(|(k, _)| k == "le")
            .map(|(_, v)| v.as_str());
        let le = match le {
            Some("+Inf") => None,
            Some(v) => match v.parse::<f64>() {
                Ok(v) => Some(v),
                Err(_) => continue,
            },
            None => continue,
        };
        match buckets.iter_mut().find(|b| b.le == le) {
            Some(bucket) => bucket.count += count(value),
            None => buckets.push(LatencyBucket {
                le,
                count: count(value),
            }),
        }
    }
    // Ascending, +Inf (None) last.
    buckets.sort_by(|a, b| match (a.le, b.le) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    DashboardLatency {
        buckets,
        count: count(totals.sum("http_request_duration_seconds_count")),
        sum_seconds: totals.sum("http_request_duration_seconds_sum"),
    }
}

/// The operations page's snapshot. Counters are cumulative since the nodes alive started,
/// summed over them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    /// Server time, milliseconds since the epoch.
    pub at: i64,
    /// Products in play (stock moved in the last hour, or released within a day of now),
    /// most recently moved first; at most 50.
    pub products: Vec<DashboardProduct>,
    pub orders: DashboardOrders,
    pub waiting_room: DashboardWaitingRoom,
    /// Campaigns issuing now or in the last day, newest first; at most 20.
    pub coupons: Vec<DashboardCampaign>,
    /// Payment attempts by outcome.
    pub payments: BTreeMap<String, u64>,
    pub events: DashboardEvents,
    /// `POST /api/v1/orders`.
    pub latency: DashboardLatency,
    pub nodes: Vec<DashboardNode>,
    pub health: DashboardHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardProduct {
    pub id: i64,
    pub name: String,
    pub price: i64,
    pub release_at: i64,
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
    /// Units taken by orders: held or sold, not released or returned.
    pub sold: i64,
}

impl From<ProductInPlay> for DashboardProduct {
    fn from(p: ProductInPlay) -> DashboardProduct {
        DashboardProduct {
            id: p.id,
            name: p.name,
            price: p.price,
            release_at: p.release_at.millis(),
            on_hand: p.on_hand,
            held: p.held,
            available: p.on_hand - p.held,
            sold: p.sold,
        }
    }
}

/// The funnel: attempted → placed → paid → confirmed, and refusals by reason code.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardOrders {
    pub attempted: u64,
    pub placed: u64,
    pub paid: u64,
    pub confirmed: u64,
    pub cancelled: u64,
    pub refused: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardWaitingRoom {
    /// Waiting now (the line's span, cluster-wide).
    pub waiting: i64,
    pub entered: u64,
    pub admitted: u64,
    /// Attempts refused because the room was full.
    pub full: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardCampaign {
    pub id: i64,
    pub name: String,
    pub issued: i64,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardEvents {
    /// Outbox events not yet dispatched, on the node furthest behind.
    pub outbox_pending: u64,
    /// Outbox events not yet acknowledged by the broker (0 without Kafka).
    pub relay_lag_events: u64,
    /// Open dead letters.
    pub dead_letters: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardLatency {
    /// Cumulative counts, as Prometheus buckets; the last (`le` null) is +Inf.
    pub buckets: Vec<LatencyBucket>,
    pub count: u64,
    pub sum_seconds: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyBucket {
    /// Upper bound in seconds; null for +Inf.
    pub le: Option<f64>,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardNode {
    pub id: String,
    pub started_at: i64,
    pub seen_at: i64,
    pub draining: bool,
    /// Its heartbeat is at most 10 s old.
    pub alive: bool,
}

/// `up`, `down`, or `off` (no node uses it).
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardHealth {
    pub database: &'static str,
    pub redis: &'static str,
    pub broker: &'static str,
}

impl Default for DashboardHealth {
    fn default() -> DashboardHealth {
        DashboardHealth {
            database: "off",
            redis: "off",
            broker: "off",
        }
    }
}

impl DashboardHealth {
    /// One node's view of a shared dependency: down if any node alive sees it down. Not
    /// the database's: the node answering has just read it, which outranks any node's
    /// last report.
    fn see(&mut self, dependency: Option<&str>, up: bool) {
        let slot = match dependency {
            Some("redis") => &mut self.redis,
            Some("broker") => &mut self.broker,
            _ => return,
        };
        if !up {
            *slot = "down";
        } else if *slot == "off" {
            *slot = "up";
        }
    }
}
