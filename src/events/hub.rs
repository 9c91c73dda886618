//! Live updates on this node: per-order channels for `GET /orders/{id}/events` and per-user
//! channels for `GET /me/events`, fed by the dispatcher.

use crate::domain::events::{Event, OrderStatusChanged, PartnerOrderChanged};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Buffered status events per live order stream; a slower client skips ahead.
const STREAM_BUFFER_EVENTS: usize = 16;

/// What an order's live stream carries: the order's status changes, and each step of its
/// partner orders (preparing, shipped with the tracking number, delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderUpdate {
    Status(OrderStatusChanged),
    PartnerOrder(PartnerOrderChanged),
}

/// Per-order broadcast channels for `GET /orders/{id}/events`, and per-user ones for
/// `GET /me/events`.
#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<i64, broadcast::Sender<Arc<OrderUpdate>>>>,
    users: Mutex<HashMap<i64, broadcast::Sender<Arc<UserEvent>>>>,
}

/// One event of a user's own stream: every `order.*` and `partner_order.*` of their orders,
/// every `waitlist.*` of their entries, every `points.*` of their account and every change
/// of their coupons, as written to the outbox.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserEvent {
    /// The outbox id: increasing, so a client can tell what it has seen.
    pub id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub payload: serde_json::Value,
}

impl Hub {
    pub fn subscribe(&self, order_id: i64) -> broadcast::Receiver<Arc<OrderUpdate>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(order_id)
            .or_insert_with(|| broadcast::channel(STREAM_BUFFER_EVENTS).0)
            .subscribe()
    }

    pub(crate) fn publish(&self, order_id: i64, update: OrderUpdate) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = topics.get(&order_id) {
            if sender.send(Arc::new(update)).is_err() {
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
    pub(crate) fn publish_user(&self, user_id: i64, event: &Event) {
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
    pub(crate) fn prune(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, s| s.receiver_count() > 0);
        drop(topics);
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, s| s.receiver_count() > 0);
    }
}
