//! The in-process event dispatcher (DESIGN §4, embedded mode). Each node tails the outbox
//! table from the id it started at and feeds its subscribers: live order streams (SSE),
//! the availability gate, the listing cache, the access-token deny-list, the waitlist
//! worker (`crate::waitlist`) and the points earner (`crate::points`). Because every
//! node tails the same table, a change made on node B reaches a buyer connected to node A;
//! with Redis, B's notice wakes A at once instead of at A's next poll.

use crate::auth::AuthService;
use crate::cluster::cache::LevelsSeen;
use crate::cluster::gate::StockSeen;
use crate::cluster::Cluster;
use crate::domain::events::{
    self, Event, OrderStatusChanged, SessionRevoked, StockChanged, WaitlistChanged,
};
use crate::metrics::Metrics;
use crate::store::{StockLevels, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// Events read per outbox poll.
const DISPATCH_BATCH_EVENTS: i64 = 1000;
/// Buffered status events per live order stream; a slower client skips ahead.
const STREAM_BUFFER_EVENTS: usize = 16;

/// Per-order broadcast channels for `GET /orders/{id}/events`, and per-user ones for
/// `GET /me/events`.
#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<i64, broadcast::Sender<Arc<OrderStatusChanged>>>>,
    users: Mutex<HashMap<i64, broadcast::Sender<Arc<UserEvent>>>>,
}

/// One event of a user's own stream: every `order.*` of their orders, every `waitlist.*`
/// of their entries, every `points.*` of their account and every change of their coupons, as
/// written to the outbox.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserEvent {
    /// The outbox id: increasing, so a client can tell what it has seen.
    pub id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub payload: serde_json::Value,
}

impl Hub {
    pub fn subscribe(&self, order_id: i64) -> broadcast::Receiver<Arc<OrderStatusChanged>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(order_id)
            .or_insert_with(|| broadcast::channel(STREAM_BUFFER_EVENTS).0)
            .subscribe()
    }

    fn publish(&self, change: OrderStatusChanged) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let order_id = change.order_id;
        if let Some(sender) = topics.get(&order_id) {
            if sender.send(Arc::new(change)).is_err() {
                topics.remove(&order_id);
            }
        }
    }

    pub fn subscribe_user(&self, user_id: i64) -> broadcast::Receiver<Arc<UserEvent>> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(user_id)
            .or_insert_with(|| broadcast::channel(STREAM_BUFFER_EVENTS).0)
            .subscribe()
    }

    /// Builds the event (parsing its payload) only when the user has a live stream here.
    fn publish_user(&self, user_id: i64, event: &Event) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = users.get(&user_id) else {
            return;
        };
        let Ok(payload) = serde_json::from_str(&event.payload) else {
            return;
        };
        let event = UserEvent {
            id: event.id,
            event_type: event.event_type.clone(),
            payload,
        };
        if sender.send(Arc::new(event)).is_err() {
            users.remove(&user_id);
        }
    }

    /// Drops channels whose streams have all gone; once per dispatch pass, not per event.
    fn prune(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, s| s.receiver_count() > 0);
        drop(topics);
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, s| s.receiver_count() > 0);
    }
}

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    /// The gate and the listing cache are fed from here; `remote_wake` and `fanout` carry
    /// wake-ups between nodes.
    pub cluster: Cluster,
    pub auth: Arc<AuthService>,
    pub metrics: Arc<Metrics>,
    /// Wakes this node's waitlist worker when units come back or an order settles.
    pub waitlist: Arc<crate::waitlist::Signal>,
    /// Hands `order.confirmed` to this node's points earner (`crate::points`).
    pub points: Arc<crate::points::EarnQueue>,
    pub wake: Arc<Notify>,
    pub poll: Duration,
    /// The id of the last event dispatched on this node, for [`EventSync`].
    pub cursor: watch::Sender<i64>,
}

/// Lets a handler wait until this node has dispatched the events it just committed, so a
/// response that says "stock is back" is never followed by a refusal from the gate, and the
/// writer's next read of the listing is fresh. Used only off the hot path (cancel, inbound,
/// product changes).
#[derive(Clone)]
pub struct EventSync {
    pub store: Arc<dyn Store>,
    pub wake: Arc<Notify>,
    pub cursor: watch::Receiver<i64>,
}

/// What one batch of events changes in the state nodes share.
#[derive(Default)]
struct SharedUpdates {
    /// Newest `(event id, payload)` per product.
    stock: HashMap<i64, (i64, StockChanged)>,
    /// A product was created or updated: the listing cache starts a new generation.
    catalog_changed: bool,
}

/// Longest a handler waits for its events to be dispatched before answering anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

impl EventSync {
    pub async fn caught_up(&self) {
        let Ok(target) = self.store.last_event_id().await else {
            return;
        };
        self.wake.notify_one();
        let mut cursor = self.cursor.clone();
        let reached = tokio::time::timeout(SYNC_TIMEOUT, cursor.wait_for(|id| *id >= target)).await;
        if reached.is_err() {
            tracing::warn!(target, "outbox dispatcher is lagging");
        }
    }
}

impl Dispatcher {
    /// Tails the outbox until `stop` fires. Starts after the newest event at call time:
    /// subscribers read current state from the database when they attach.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut cursor = match self.store.last_event_id().await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "outbox dispatcher could not start");
                0
            }
        };
        // Woken by this node's own commit: only then does it tell the other nodes, so a
        // notice never echoes around the cluster.
        let mut local = false;
        loop {
            match self.store.events_after(cursor, DISPATCH_BATCH_EVENTS).await {
                Ok(batch) => {
                    let full = batch.len() as i64 == DISPATCH_BATCH_EVENTS;
                    let mut shared = SharedUpdates::default();
                    for event in &batch {
                        self.dispatch(event, &mut shared);
                        cursor = event.id;
                    }
                    // Before the cursor moves: `EventSync` promises the gate and the cache
                    // reflect everything up to it.
                    self.apply(shared).await;
                    self.cursor.send_replace(cursor);
                    if local && !batch.is_empty() {
                        self.cluster.fanout.announce(cursor).await;
                    }
                    self.metrics.outbox_dispatched.inc_by(batch.len() as u64);
                    self.metrics.outbox_lag_events.set(if full {
                        DISPATCH_BATCH_EVENTS
                    } else {
                        0
                    });
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox poll failed"),
            }
            self.auth.denylist.prune(crate::domain::Timestamp::now());
            self.hub.prune();
            local = tokio::select! {
                _ = self.wake.notified() => true,
                _ = self.cluster.remote_wake.notified() => false,
                _ = tokio::time::sleep(self.poll) => false,
                _ = stop.changed() => return,
            };
        }
    }

    /// Feeds the gate and the listing cache once per batch: one call each, whatever the
    /// number of events.
    async fn apply(&self, shared: SharedUpdates) {
        if shared.catalog_changed {
            self.cluster.listing.invalidate().await;
        }
        let mut stock: Vec<(i64, StockChanged)> = shared.stock.into_values().collect();
        stock.sort_unstable_by_key(|(id, _)| *id);
        let gate: Vec<StockSeen> = stock
            .iter()
            .map(|(event_id, s)| StockSeen {
                event_id: *event_id,
                product_id: s.product_id,
                available: s.available,
            })
            .collect();
        let levels: Vec<LevelsSeen> = stock
            .iter()
            .map(|(event_id, s)| LevelsSeen {
                event_id: *event_id,
                levels: StockLevels {
                    product_id: s.product_id,
                    on_hand: s.on_hand,
                    held: s.held,
                },
            })
            .collect();
        self.cluster.gate.observe(&gate).await;
        self.cluster.listing.observe(&levels).await;
    }

    fn dispatch(&self, event: &Event, shared: &mut SharedUpdates) {
        let parsed = match event.event_type.as_str() {
            events::STOCK_CHANGED => {
                serde_json::from_str::<StockChanged>(&event.payload).map(|s| {
                    if s.available > 0 {
                        self.waitlist.stock_available(s.product_id);
                    }
                    // Ascending ids: the last event of a product in the batch is its newest.
                    shared.stock.insert(s.product_id, (event.id, s));
                })
            }
            events::PRODUCT_CREATED | events::PRODUCT_UPDATED => {
                shared.catalog_changed = true;
                Ok(())
            }
            events::SESSION_REVOKED => {
                serde_json::from_str::<SessionRevoked>(&event.payload).map(|s| {
                    if let (Some(jti), Some(expires_at)) = (s.jti, s.expires_at) {
                        self.auth.denylist.insert(jti, expires_at);
                    }
                })
            }
            t if t.starts_with("order.") => {
                serde_json::from_str::<OrderStatusChanged>(&event.payload).map(|c| {
                    if matches!(
                        t,
                        events::ORDER_PAID
                            | events::ORDER_CANCELLED
                            | events::ORDER_EXPIRED
                            | events::ORDER_REFUNDED
                    ) {
                        self.waitlist.order_settled();
                    }
                    if t == events::ORDER_CONFIRMED {
                        self.points.push(event);
                    }
                    self.hub.publish_user(c.user_id, event);
                    self.hub.publish(c)
                })
            }
            t if t.starts_with("points.") => {
                serde_json::from_str::<events::PointsChanged>(&event.payload)
                    .map(|p| self.hub.publish_user(p.user_id, event))
            }
            t if t.starts_with("waitlist.") => {
                serde_json::from_str::<WaitlistChanged>(&event.payload)
                    .map(|w| self.hub.publish_user(w.user_id, event))
            }
            events::COUPON_ISSUED => serde_json::from_str::<events::CouponIssued>(&event.payload)
                .map(|c| self.hub.publish_user(c.user_id, event)),
            events::COUPON_HELD | events::COUPON_USED | events::COUPON_RETURNED => {
                serde_json::from_str::<events::CouponMoved>(&event.payload)
                    .map(|c| self.hub.publish_user(c.user_id, event))
            }
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            tracing::error!(event_id = event.id, error = %e, "malformed outbox payload");
        }
    }
}
