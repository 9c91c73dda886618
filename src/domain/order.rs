use super::coupon::CouponStatus;
use super::event_names::{COUPON_RETURNED, COUPON_USED};
use super::points::HoldStatus;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "buyer" => Some(Role::Buyer),
            "seller" => Some(Role::Seller),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The order lifecycle of DESIGN §3:
/// `pending_payment → paid → confirmed`, `pending_payment → cancelled`, `paid → refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Confirmed,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<OrderStatus> {
        match raw {
            "pending_payment" => Some(OrderStatus::PendingPayment),
            "paid" => Some(OrderStatus::Paid),
            "confirmed" => Some(OrderStatus::Confirmed),
            "cancelled" => Some(OrderStatus::Cancelled),
            "refunded" => Some(OrderStatus::Refunded),
            _ => None,
        }
    }

    /// Orders in these states count against a buyer's per-product purchase limit.
    pub fn counts_toward_limit(self) -> bool {
        matches!(
            self,
            OrderStatus::PendingPayment | OrderStatus::Paid | OrderStatus::Confirmed
        )
    }
}

/// What an order's transition does to the coupon and the points it holds (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenefitStep {
    /// The coupon's status before and after.
    pub coupon: (CouponStatus, CouponStatus),
    pub coupon_event: &'static str,
    /// Where the points hold goes (`HoldStatus::step` says from where).
    pub points: HoldStatus,
}

impl OrderStatus {
    /// Entering `paid` uses the coupon and spends the points; `cancelled` (asked for or
    /// expired) gives both back; `refunded` restores the coupon and refunds the points.
    pub fn benefit_step(self) -> Option<BenefitStep> {
        let (coupon, coupon_event, points) = match self {
            OrderStatus::Paid => (
                (CouponStatus::Held, CouponStatus::Used),
                COUPON_USED,
                HoldStatus::Spent,
            ),
            OrderStatus::Cancelled => (
                (CouponStatus::Held, CouponStatus::Issued),
                COUPON_RETURNED,
                HoldStatus::Released,
            ),
            OrderStatus::Refunded => (
                (CouponStatus::Used, CouponStatus::Issued),
                COUPON_RETURNED,
                HoldStatus::Refunded,
            ),
            OrderStatus::PendingPayment | OrderStatus::Confirmed => return None,
        };
        Some(BenefitStep {
            coupon,
            coupon_event,
            points,
        })
    }
}

/// Why a pending order was cancelled; recorded on the order and in its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The buyer or an admin asked for it.
    Requested,
    /// The payment deadline (`pay_by`) passed; the sweeper released the holds.
    Expired,
    /// Its sellers cancelled every part of the paid order, one by one.
    PartsCancelled,
    /// The payment was cancelled at the gateway (its webhook said so): the money is back.
    GatewayCancelled,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Requested => "requested",
            CancelReason::Expired => "expired",
            CancelReason::PartsCancelled => "parts_cancelled",
            CancelReason::GatewayCancelled => "gateway_cancelled",
        }
    }
}

/// Kinds of rows in the stock movement ledger, and what each does to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    Inbound,
    Hold,
    Release,
    Commit,
    Return,
    Adjust,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Inbound => "inbound",
            MovementKind::Hold => "hold",
            MovementKind::Release => "release",
            MovementKind::Commit => "commit",
            MovementKind::Return => "return",
            MovementKind::Adjust => "adjust",
        }
    }

    pub fn parse(raw: &str) -> Option<MovementKind> {
        match raw {
            "inbound" => Some(MovementKind::Inbound),
            "hold" => Some(MovementKind::Hold),
            "release" => Some(MovementKind::Release),
            "commit" => Some(MovementKind::Commit),
            "return" => Some(MovementKind::Return),
            "adjust" => Some(MovementKind::Adjust),
            _ => None,
        }
    }

    /// `(Δon_hand, Δheld)` for a movement of `quantity` units. `verify` replays the ledger
    /// with exactly this function, so the balances and the ledger cannot drift apart silently.
    pub fn effect(self, quantity: i64) -> (i64, i64) {
        match self {
            MovementKind::Inbound | MovementKind::Return | MovementKind::Adjust => (quantity, 0),
            MovementKind::Hold => (0, quantity),
            MovementKind::Release => (0, -quantity),
            MovementKind::Commit => (-quantity, -quantity),
        }
    }
}
