//! Events written to the outbox in the same transaction as the state change they describe
//! (DESIGN §4). Payloads are built here so both stores write byte-identical JSON.

use super::order::{CancelReason, OrderStatus};
use super::values::Timestamp;
use serde::{Deserialize, Serialize};

pub const ORDER: &str = "order";
pub const PRODUCT: &str = "product";
pub const SESSION: &str = "session";

pub const ORDER_PLACED: &str = "order.placed";
pub const ORDER_PAID: &str = "order.paid";
pub const ORDER_CANCELLED: &str = "order.cancelled";
pub const ORDER_EXPIRED: &str = "order.expired";
pub const ORDER_REFUNDED: &str = "order.refunded";
pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const STOCK_CHANGED: &str = "stock.changed";
pub const SESSION_REVOKED: &str = "session.revoked";

/// An event about to be appended to the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: i64,
    pub event_type: &'static str,
    pub payload: String,
}

/// An event read back from the outbox.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub aggregate_type: String,
    pub aggregate_id: i64,
    pub event_type: String,
    pub payload: String,
    pub created_at: Timestamp,
}

/// Payload of every `order.*` event: enough for a live status stream without a read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderStatusChanged {
    pub order_id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StockChanged {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRevoked {
    pub user_id: i64,
    pub jti: String,
    pub expires_at: Timestamp,
}

fn json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

pub fn order_status(
    event_type: &'static str,
    order_id: i64,
    user_id: i64,
    status: OrderStatus,
    reason: Option<CancelReason>,
    at: Timestamp,
) -> NewEvent {
    NewEvent {
        aggregate_type: ORDER,
        aggregate_id: order_id,
        event_type,
        payload: json(&OrderStatusChanged {
            order_id,
            user_id,
            status,
            reason: reason.map(|r| r.as_str().to_owned()),
            at,
        }),
    }
}

pub fn order_placed(order_id: i64, user_id: i64, at: Timestamp) -> NewEvent {
    order_status(
        ORDER_PLACED,
        order_id,
        user_id,
        OrderStatus::PendingPayment,
        None,
        at,
    )
}

pub fn stock_changed(product_id: i64, on_hand: i64, held: i64) -> NewEvent {
    NewEvent {
        aggregate_type: PRODUCT,
        aggregate_id: product_id,
        event_type: STOCK_CHANGED,
        payload: json(&StockChanged {
            product_id,
            on_hand,
            held,
            available: on_hand - held,
        }),
    }
}

pub fn product_changed(event_type: &'static str, product_id: i64) -> NewEvent {
    NewEvent {
        aggregate_type: PRODUCT,
        aggregate_id: product_id,
        event_type,
        payload: json(&serde_json::json!({ "product_id": product_id })),
    }
}

pub fn session_revoked(user_id: i64, jti: &str, expires_at: Timestamp) -> NewEvent {
    NewEvent {
        aggregate_type: SESSION,
        aggregate_id: user_id,
        event_type: SESSION_REVOKED,
        payload: json(&SessionRevoked {
            user_id,
            jti: jti.to_owned(),
            expires_at,
        }),
    }
}
