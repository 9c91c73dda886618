//! Events written to the outbox in the same transaction as the state change they describe
//! (DESIGN §4). Payloads are built here so both stores write byte-identical JSON.

use super::fulfilment::PartnerOrderStatus;
use super::order::{CancelReason, OrderStatus, Role};
use super::values::Timestamp;
use serde::{Deserialize, Serialize};

// The names, in a leaf module so that any module (the order lifecycle, the waitlist) can
// name an event without importing the payload builders below.
pub use super::event_names::*;

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

/// Payload of every `partner_order.*` event: the part's new status and shipment, with the
/// order and buyer it belongs to so the dispatcher can route it to their live streams
/// without a read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartnerOrderChanged {
    pub partner_order_id: i64,
    pub order_id: i64,
    pub user_id: i64,
    pub partner_id: i64,
    pub status: PartnerOrderStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tracking_number: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StockChanged {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

/// A session ended: by logout (`jti` names the access token to refuse until it expires)
/// or because its refresh token was replayed (no `jti`: the access tokens of a session are
/// not tracked, and live at most `access_token_ttl_secs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRevoked {
    pub user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<Timestamp>,
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

/// A seller moved a partner order forward (`event_type` names the step).
pub fn partner_order_changed(event_type: &'static str, change: &PartnerOrderChanged) -> NewEvent {
    NewEvent {
        aggregate_type: PARTNER_ORDER,
        aggregate_id: change.partner_order_id,
        event_type,
        payload: json(change),
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

/// Logout: the session ends and the access token `jti` is refused until it expires.
pub fn session_revoked(
    user_id: i64,
    session_id: i64,
    jti: &str,
    expires_at: Timestamp,
) -> NewEvent {
    NewEvent {
        aggregate_type: SESSION,
        aggregate_id: user_id,
        event_type: SESSION_REVOKED,
        payload: json(&SessionRevoked {
            user_id,
            session_id: Some(session_id),
            jti: Some(jti.to_owned()),
            expires_at: Some(expires_at),
        }),
    }
}

/// A replayed refresh token ended the session it belonged to.
pub fn session_reuse_revoked(user_id: i64, session_id: i64) -> NewEvent {
    NewEvent {
        aggregate_type: SESSION,
        aggregate_id: user_id,
        event_type: SESSION_REVOKED,
        payload: json(&SessionRevoked {
            user_id,
            session_id: Some(session_id),
            jti: None,
            expires_at: None,
        }),
    }
}

/// `session.started` (login) or `session.rotated` (refresh).
pub fn session(event_type: &'static str, user_id: i64, session_id: i64) -> NewEvent {
    NewEvent {
        aggregate_type: SESSION,
        aggregate_id: user_id,
        event_type,
        payload: json(&serde_json::json!({ "user_id": user_id, "session_id": session_id })),
    }
}

/// A new account. The email stays out of events: they fan out to consumers and logs.
pub fn user_created(user_id: i64, role: Role, partner_id: Option<i64>) -> NewEvent {
    NewEvent {
        aggregate_type: USER,
        aggregate_id: user_id,
        event_type: USER_CREATED,
        payload: json(&serde_json::json!({
            "user_id": user_id, "role": role, "partner_id": partner_id
        })),
    }
}

pub fn partner_created(partner_id: i64, commission_rate_bps: i64) -> NewEvent {
    NewEvent {
        aggregate_type: PARTNER,
        aggregate_id: partner_id,
        event_type: PARTNER_CREATED,
        payload: json(&serde_json::json!({
            "partner_id": partner_id, "commission_rate_bps": commission_rate_bps
        })),
    }
}

/// A payment attempt that changed nothing on the order (declined, wrong amount, voided).
pub fn payment_failed(order_id: i64, outcome: &str) -> NewEvent {
    NewEvent {
        aggregate_type: ORDER,
        aggregate_id: order_id,
        event_type: PAYMENT_FAILED,
        payload: json(&serde_json::json!({ "order_id": order_id, "outcome": outcome })),
    }
}

/// Payload of `payment.refund_failed` and `payment.refunded`: what the gateway owes back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefundDue {
    pub order_id: i64,
    /// The gateway's payment to cancel `amount` of. Absent on events written before
    /// payments were cancelled by id: the retrier then reads the order's approved payment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payment_id: Option<String>,
    pub amount: i64,
    /// Why the gateway refused (on `payment.refund_failed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A gateway refund (or void) of `amount` of `payment_id` that failed: the refund
/// retrier's input.
pub fn payment_refund_failed(
    order_id: i64,
    payment_id: &str,
    amount: i64,
    error: &str,
) -> NewEvent {
    let due = RefundDue {
        order_id,
        payment_id: Some(payment_id.to_owned()),
        amount,
        error: Some(error.chars().take(500).collect()),
    };
    NewEvent {
        aggregate_type: ORDER,
        aggregate_id: order_id,
        event_type: PAYMENT_REFUND_FAILED,
        payload: json(&due),
    }
}

/// A refund that had failed went through.
pub fn payment_refunded(order_id: i64, payment_id: Option<&str>, amount: i64) -> NewEvent {
    let due = RefundDue {
        order_id,
        payment_id: payment_id.map(str::to_owned),
        amount,
        error: None,
    };
    NewEvent {
        aggregate_type: ORDER,
        aggregate_id: order_id,
        event_type: PAYMENT_REFUNDED,
        payload: json(&due),
    }
}

/// Payload of every `waitlist.*` event. `order_id` names the offer's order once there is
/// one; `pay_by` is its payment deadline (on `waitlist.offered`); `reason` says why a
/// buyer was skipped (the order's rejection code).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaitlistChanged {
    pub entry_id: i64,
    pub product_id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub status: super::waitlist::WaitlistStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pay_by: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// A waitlist entry entered `change.status` (the event type follows from it).
pub fn waitlist_changed(change: &WaitlistChanged) -> NewEvent {
    NewEvent {
        aggregate_type: WAITLIST,
        aggregate_id: change.entry_id,
        event_type: change.status.event_type(),
        payload: json(change),
    }
}

/// Payload of `coupon.issued`: one user coupon handed out by a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CouponIssued {
    pub user_coupon_id: i64,
    pub campaign_id: i64,
    pub user_id: i64,
    /// The campaign's `issued` count after this coupon.
    pub issued: i64,
    pub issued_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<Timestamp>,
}

pub fn coupon_issued(issued: &CouponIssued) -> NewEvent {
    NewEvent {
        aggregate_type: COUPON,
        aggregate_id: issued.campaign_id,
        event_type: COUPON_ISSUED,
        payload: json(issued),
    }
}

/// Payload of `coupon.held`, `coupon.used` and `coupon.returned`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CouponMoved {
    pub user_coupon_id: i64,
    pub campaign_id: i64,
    pub user_id: i64,
    pub order_id: i64,
}

/// Aggregate id: the campaign, like `coupon.issued`.
pub fn coupon_moved(event_type: &'static str, moved: &CouponMoved) -> NewEvent {
    NewEvent {
        aggregate_type: COUPON,
        aggregate_id: moved.campaign_id,
        event_type,
        payload: json(moved),
    }
}

pub fn coupon_campaign_created(campaign_id: i64, total_quantity: i64) -> NewEvent {
    NewEvent {
        aggregate_type: COUPON,
        aggregate_id: campaign_id,
        event_type: COUPON_CAMPAIGN_CREATED,
        payload: json(&serde_json::json!({
            "campaign_id": campaign_id, "total_quantity": total_quantity
        })),
    }
}

/// Payload of every `points.*` event: the change and the account after it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PointsChanged {
    pub user_id: i64,
    /// Signed only for `points.adjusted`.
    pub amount: i64,
    pub balance: i64,
    pub held: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lot_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

pub fn points_changed(event_type: &'static str, change: &PointsChanged) -> NewEvent {
    NewEvent {
        aggregate_type: POINTS,
        aggregate_id: change.user_id,
        event_type,
        payload: json(change),
    }
}

/// Payload of `settlement.created`: the statement's totals, so a payout system needs no
/// read to start a transfer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettlementCreated {
    pub settlement_id: i64,
    pub partner_id: i64,
    /// `YYYY-MM-DD` in the settlement time zone.
    pub business_date: String,
    pub gross: i64,
    pub commission: i64,
    pub net: i64,
    pub line_count: i64,
}

pub fn settlement_created(created: &SettlementCreated) -> NewEvent {
    NewEvent {
        aggregate_type: SETTLEMENT,
        aggregate_id: created.settlement_id,
        event_type: SETTLEMENT_CREATED,
        payload: json(created),
    }
}
