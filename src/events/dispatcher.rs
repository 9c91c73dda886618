//! The in-process event dispatcher (DESIGN §4). Each node tails the outbox table from the
//! id it started at and feeds what it keeps: live order streams (SSE: the order's status
//! and its partner orders' fulfilment), the availability gate, the listing cache, the
//! access-token deny-list, and its [`Subscriber`]s (the waitlist worker, the points
//! earner). Because every node tails the same table, a change
//! made on node B reaches a buyer connected to node A; with Redis, B's notice wakes A at
//! once instead of at A's next poll.

use super::hub::{Hub, OrderUpdate};
use super::subscriber::Subscriber;
use super::sync::DispatchProgress;
use crate::auth::AuthService;
use crate::clock::SharedClock;
use crate::cluster::cache::LevelsSeen;
use crate::cluster::gate::StockSeen;
use crate::cluster::Cluster;
use crate::domain::events::{
    self, Event, OrderStatusChanged, PartnerOrderChanged, SessionRevoked, StockChanged,
    WaitlistChanged,
};
use crate::metrics::Metrics;
use crate::store::{StockLevels, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read per outbox poll.
const DISPATCH_BATCH_EVENTS: i64 = 1000;

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    /// The gate and the listing cache are fed from here; `remote_wake` and `fanout` carry
    /// wake-ups between nodes.
    pub cluster: Cluster,
    pub auth: Arc<AuthService>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// Handed every event after the dispatcher's own work (waitlist offers, points earning).
    pub subscribers: Vec<Arc<dyn Subscriber>>,
    /// What wakes this dispatcher, and where it reports the last event it dispatched.
    pub progress: DispatchProgress,
    pub poll: Duration,
}

/// What one batch of events changes in the state nodes share.
#[derive(Default)]
struct SharedUpdates {
    /// Newest `(event id, payload)` per product.
    stock: HashMap<i64, (i64, StockChanged)>,
    /// A product was created or updated: the listing cache starts a new generation.
    catalog_changed: bool,
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
                    self.progress.cursor.send_replace(cursor);
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
            self.auth.denylist.prune(self.clock.now());
            self.hub.prune();
            local = tokio::select! {
                _ = self.progress.wake.notified() => true,
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
                    if let Some(session_id) = s.session_id {
                        self.auth.revoke_session(session_id, event.created_at);
                    }
                })
            }
            t if t.starts_with("order.") => {
                serde_json::from_str::<OrderStatusChanged>(&event.payload).map(|c| {
                    self.hub.publish_user(c.user_id, event);
                    self.hub.publish(c.order_id, OrderUpdate::Status(c))
                })
            }
            t if t.starts_with("partner_order.") => {
                serde_json::from_str::<PartnerOrderChanged>(&event.payload).map(|c| {
                    self.hub.publish_user(c.user_id, event);
                    self.hub.publish(c.order_id, OrderUpdate::PartnerOrder(c))
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
        for subscriber in &self.subscribers {
            subscriber.deliver(event);
        }
    }
}
