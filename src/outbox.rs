//! The in-process event dispatcher (DESIGN §4, embedded mode). Each node tails the outbox
//! table from the id it started at and feeds its subscribers: live order streams (SSE),
//! the sold-out gate and the access-token deny-list. Because every node tails the same
//! table, a change made on node B reaches a buyer connected to node A.

use crate::auth::AuthService;
use crate::domain::events::{self, Event, OrderStatusChanged, SessionRevoked, StockChanged};
use crate::metrics::Metrics;
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// Events read per outbox poll.
const DISPATCH_BATCH_EVENTS: i64 = 1000;
/// Buffered status events per live order stream; a slower client skips ahead.
const STREAM_BUFFER_EVENTS: usize = 16;

/// Per-order broadcast channels for `GET /orders/{id}/events`.
#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<i64, broadcast::Sender<Arc<OrderStatusChanged>>>>,
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

    /// Drops channels whose streams have all gone; once per dispatch pass, not per event.
    fn prune(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, s| s.receiver_count() > 0);
    }
}

/// Products known to have nothing available, so placement can refuse them without a
/// database round trip. Fed only from `stock.changed` events, in outbox order, so it never
/// goes back to an older state.
#[derive(Default)]
pub struct SoldOutGate {
    sold_out: RwLock<HashSet<i64>>,
}

impl SoldOutGate {
    pub fn is_sold_out(&self, product_id: i64) -> bool {
        self.sold_out
            .read()
            .map(|s| s.contains(&product_id))
            .unwrap_or(false)
    }

    pub fn observe(&self, product_id: i64, available: i64) {
        if let Ok(mut s) = self.sold_out.write() {
            if available <= 0 {
                s.insert(product_id);
            } else {
                s.remove(&product_id);
            }
        }
    }
}

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub gate: Arc<SoldOutGate>,
    pub auth: Arc<AuthService>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub poll: Duration,
    /// The id of the last event dispatched on this node, for [`EventSync`].
    pub cursor: watch::Sender<i64>,
}

/// Lets a handler wait until this node has dispatched the events it just committed, so a
/// response that says "stock is back" is never followed by a refusal from this node's
/// sold-out gate. Used only off the hot path (cancel, inbound).
#[derive(Clone)]
pub struct EventSync {
    pub store: Arc<dyn Store>,
    pub wake: Arc<Notify>,
    pub cursor: watch::Receiver<i64>,
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
        loop {
            match self.store.events_after(cursor, DISPATCH_BATCH_EVENTS).await {
                Ok(batch) => {
                    let full = batch.len() as i64 == DISPATCH_BATCH_EVENTS;
                    for event in &batch {
                        self.dispatch(event);
                        cursor = event.id;
                    }
                    self.cursor.send_replace(cursor);
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
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn dispatch(&self, event: &Event) {
        let parsed = match event.event_type.as_str() {
            events::STOCK_CHANGED => serde_json::from_str::<StockChanged>(&event.payload)
                .map(|s| self.gate.observe(s.product_id, s.available)),
            events::SESSION_REVOKED => {
                serde_json::from_str::<SessionRevoked>(&event.payload).map(|s| {
                    if let (Some(jti), Some(expires_at)) = (s.jti, s.expires_at) {
                        self.auth.denylist.insert(jti, expires_at);
                    }
                })
            }
            t if t.starts_with("order.") => {
                serde_json::from_str::<OrderStatusChanged>(&event.payload)
                    .map(|c| self.hub.publish(c))
            }
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            tracing::error!(event_id = event.id, error = %e, "malformed outbox payload");
        }
    }
}
