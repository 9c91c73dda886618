//! Plain rows going into and coming out of a store. Values here were validated on the way
//! in (domain newtypes) and are trusted on the way out.

use crate::domain::allocation::Rejection;
use crate::domain::order::MovementKind;
use crate::domain::{OrderStatus, Role, Timestamp};

pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based.
    pub page: i64,
    pub size: i64,
}

impl PageRequest {
    pub fn offset(self) -> i64 {
        (self.page - 1) * self.size
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub size: i64,
    pub total: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub partner_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub partner_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated {
        user_id: i64,
        session_id: i64,
    },
    /// An already-rotated token was presented again; the session is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct PartnerRecord {
    pub id: i64,
    pub name: String,
    pub commission_rate_bps: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub partner_id: i64,
    pub name: String,
    pub price: i64,
    pub stock: i64,
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub release_at: Option<Timestamp>,
    /// `Some(None)` clears the limit.
    pub max_per_user: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
pub struct ProductRecord {
    pub id: i64,
    pub partner_id: i64,
    pub name: String,
    pub price: i64,
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
    pub on_hand: i64,
    pub held: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevels {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
}

/// What a stock adjustment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustOutcome {
    /// Applied: the account's levels after it.
    Done(StockLevels),
    NotFound,
    /// Refused, nothing changed: `on_hand` would fall below `held` (the units promised to
    /// open orders), and so possibly below zero.
    BelowHeld,
}

#[derive(Debug, Clone)]
pub struct MovementRecord {
    pub id: i64,
    pub product_id: i64,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub memo: Option<String>,
    pub on_hand_after: i64,
    pub held_after: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct OrderItemRecord {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

#[derive(Debug, Clone)]
pub struct PartnerOrderRecord {
    pub id: i64,
    pub partner_id: i64,
    pub status: String,
    pub subtotal: i64,
    pub items: Vec<OrderItemRecord>,
}

#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub total: i64,
    pub discount: i64,
    pub points_used: i64,
    pub payable: i64,
    pub pay_by: Timestamp,
    /// When the payment was accepted; `None` until the order is paid.
    pub paid_at: Option<Timestamp>,
    pub cancel_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Ascending by partner id; items ascending by product id.
    pub partner_orders: Vec<PartnerOrderRecord>,
}

#[derive(Debug, Clone)]
pub enum PlaceOutcome {
    Placed(OrderRecord),
    /// The idempotency key was seen before with the same body.
    Replayed(OrderRecord),
    Rejected(Rejection),
}

#[derive(Debug, Clone)]
pub struct BatchResult {
    /// One per request, in request order.
    pub outcomes: Vec<PlaceOutcome>,
    /// Availability after the batch for every product it touched.
    pub available_after: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Approved,
    Declined,
    AmountMismatch,
    Refunded,
    /// Captured by the gateway but the order could no longer be paid, so it was voided.
    Voided,
}

impl PaymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentOutcome::Approved => "approved",
            PaymentOutcome::Declined => "declined",
            PaymentOutcome::AmountMismatch => "amount_mismatch",
            PaymentOutcome::Refunded => "refunded",
            PaymentOutcome::Voided => "voided",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PaymentAttempt {
    pub order_id: i64,
    pub payment_key: String,
    pub amount: i64,
    pub outcome: PaymentOutcome,
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub enum TransitionOutcome {
    Done(OrderRecord),
    NotFound,
    /// The order is not in a state that allows the transition (or its deadline passed);
    /// nothing changed.
    Refused(OrderRecord),
}

/// One product's stock account beside what its rows say it should be.
#[derive(Debug, Clone, Default)]
pub struct StockAudit {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
    /// Sum of movement quantities per kind.
    pub ledger: Vec<(MovementKind, i64)>,
    /// Units in order items of orders still `pending_payment`.
    pub open_order_units: i64,
}

/// One order's money and the stock movements that reference it.
#[derive(Debug, Clone)]
pub struct OrderAudit {
    pub order_id: i64,
    pub status: OrderStatus,
    pub total: i64,
    pub discount: i64,
    pub points_used: i64,
    pub payable: i64,
    pub items_total: i64,
    pub partner_subtotals: i64,
    pub item_units: i64,
    /// Sum of movement quantities per kind for this order.
    pub movements: Vec<(MovementKind, i64)>,
}

#[derive(Debug, Clone)]
pub struct LimitBreach {
    pub user_id: i64,
    pub product_id: i64,
    pub units: i64,
    pub max_per_user: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub stock: Vec<StockAudit>,
    pub orders: Vec<OrderAudit>,
    pub limit_breaches: Vec<LimitBreach>,
}

/// One buyer's place in one product's waitlist.
#[derive(Debug, Clone)]
pub struct WaitlistEntryRecord {
    pub id: i64,
    pub product_id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub status: crate::domain::waitlist::WaitlistStatus,
    /// The offer's order, once offered (kept when the offer lapses or is fulfilled).
    pub order_id: Option<i64>,
    /// 1-based place among the product's waiting entries; `None` unless waiting (and on
    /// rows returned by a status change).
    pub position: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WaitlistEntryRecord {
    /// The event announcing the entry's current status.
    pub fn event(
        &self,
        pay_by: Option<Timestamp>,
        reason: Option<&str>,
    ) -> crate::domain::events::NewEvent {
        crate::domain::events::waitlist_changed(&crate::domain::events::WaitlistChanged {
            entry_id: self.id,
            product_id: self.product_id,
            user_id: self.user_id,
            quantity: self.quantity,
            status: self.status,
            order_id: self.order_id,
            pay_by,
            reason: reason.map(str::to_owned),
        })
    }
}

#[derive(Debug, Clone)]
pub enum JoinOutcome {
    Joined(WaitlistEntryRecord),
    UnknownProduct,
    /// The buyer already waits for, or holds an offer of, this product.
    AlreadyWaitlisted,
}

/// A waitlist entry whose order is not an order of that buyer for that product and
/// quantity (found by `stampede verify`).
#[derive(Debug, Clone)]
pub struct WaitlistBreach {
    pub entry_id: i64,
    pub user_id: i64,
    pub status: String,
    pub order_id: Option<i64>,
}
