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
    /// The user coupon the order holds or used.
    pub coupon_id: Option<i64>,
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

/// A first-come coupon campaign to create; its values were checked by `domain::coupon`.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub discount_type: crate::domain::coupon::DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
    pub total_quantity: i64,
    pub issue_starts_at: Timestamp,
    pub issue_ends_at: Option<Timestamp>,
    pub valid_days: Option<i64>,
}

/// A coupon campaign: its terms never change after creation; `issued` counts the user
/// coupons handed out (`issued <= total_quantity`, enforced by a CHECK).
#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: i64,
    pub name: String,
    pub discount_type: crate::domain::coupon::DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
    pub total_quantity: i64,
    pub issued: i64,
    pub issue_starts_at: Timestamp,
    pub issue_ends_at: Option<Timestamp>,
    pub valid_days: Option<i64>,
    pub created_at: Timestamp,
}

impl CampaignRecord {
    pub fn window(&self) -> crate::domain::coupon::IssueWindow {
        crate::domain::coupon::IssueWindow {
            starts_at: self.issue_starts_at,
            ends_at: self.issue_ends_at,
        }
    }
}

/// A user coupon to write: who, from which campaign, and when it expires.
#[derive(Debug, Clone)]
pub struct NewUserCoupon {
    pub campaign_id: i64,
    pub user_id: i64,
    pub expires_at: Option<Timestamp>,
}

/// One user coupon with the name and terms of its campaign.
#[derive(Debug, Clone)]
pub struct UserCouponRecord {
    pub id: i64,
    pub campaign_id: i64,
    pub user_id: i64,
    /// As stored (`issued`, `held`, `used`); `expired` is derived when shown.
    pub status: crate::domain::coupon::CouponStatus,
    pub order_id: Option<i64>,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub campaign_name: String,
    pub discount_type: crate::domain::coupon::DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
}

impl UserCouponRecord {
    /// The coupon as order placement weighs it: whose it is, whether it is free, when it
    /// expires and what it takes off.
    pub fn placement_state(&self) -> super::StoreResult<crate::domain::allocation::CouponState> {
        use crate::domain::coupon::CouponStatus;
        let terms = coupon_terms(
            self.discount_type,
            self.discount_value,
            self.max_discount,
            self.min_order_amount,
        )
        .map_err(|e| super::StoreError::Corrupt(format!("user coupon {}: {e}", self.id)))?;
        Ok(crate::domain::allocation::CouponState {
            user_id: self.user_id,
            free: self.status == CouponStatus::Issued,
            expires_at: self.expires_at,
            terms,
        })
    }
}

/// A campaign's terms from its stored columns.
pub fn coupon_terms(
    discount_type: crate::domain::coupon::DiscountType,
    discount_value: i64,
    max_discount: Option<i64>,
    min_order_amount: Option<i64>,
) -> Result<crate::domain::coupon::CouponTerms, crate::domain::DomainError> {
    use crate::domain::coupon::{CouponTerms, Discount};
    Ok(CouponTerms {
        discount: Discount::new(discount_type, discount_value, max_discount)?,
        min_order_amount: min_order_amount
            .map(|m| crate::domain::Won::new("min_order_amount", m))
            .transpose()?,
    })
}

/// An order that uses a coupon or points, beside the coupon and points hold it names
/// (`verify`).
#[derive(Debug, Clone)]
pub struct OrderBenefitsAudit {
    pub order_id: i64,
    pub status: OrderStatus,
    pub total: i64,
    pub discount: i64,
    pub points_used: i64,
    pub coupon: Option<OrderCouponAudit>,
    /// The order's points hold: status and amount.
    pub points_hold: Option<(crate::domain::points::HoldStatus, i64)>,
}

/// The user coupon an order names, as stored.
#[derive(Debug, Clone)]
pub struct OrderCouponAudit {
    pub coupon_id: i64,
    pub status: crate::domain::coupon::CouponStatus,
    /// The order the coupon names back (held or used), if any.
    pub order_id: Option<i64>,
    pub terms: crate::domain::coupon::CouponTerms,
}

/// A held or used coupon whose order does not name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayCoupon {
    pub coupon_id: i64,
    pub status: crate::domain::coupon::CouponStatus,
    pub order_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct BenefitsAudit {
    pub orders: Vec<OrderBenefitsAudit>,
    pub stray_coupons: Vec<StrayCoupon>,
}

/// What one claim of a coupon did.
#[derive(Debug, Clone)]
pub enum IssueOutcome {
    /// Issued; `remaining` is what the campaign has left after it.
    Issued {
        coupon: UserCouponRecord,
        remaining: i64,
    },
    UnknownCampaign,
    /// Outside the campaign's issue window.
    NotIssuable,
    SoldOut,
    /// The buyer already holds a coupon of this campaign.
    AlreadyIssued,
}

/// One campaign's count beside its rows (found by `stampede verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponAudit {
    pub campaign_id: i64,
    pub total_quantity: i64,
    pub issued: i64,
    /// `user_coupons` rows of the campaign.
    pub rows: i64,
    /// Coupons held beyond one per buyer (the UNIQUE constraint keeps it at 0).
    pub duplicates: i64,
}

// ---------------------------------------------------------------------------------------
// Loyalty points (`PointsStore`; rules in `crate::domain::points`)
// ---------------------------------------------------------------------------------------

/// A buyer's points account; all zeros when the buyer never had points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointsAccount {
    pub user_id: i64,
    pub balance: i64,
    pub held: i64,
}

/// Points that expire at one instant (unheld remainders of lots), soonest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsExpiring {
    pub amount: i64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct PointsSummary {
    pub account: PointsAccount,
    pub expiring: Vec<PointsExpiring>,
}

#[derive(Debug, Clone)]
pub struct PointsLedgerRecord {
    pub id: i64,
    pub user_id: i64,
    pub kind: crate::domain::points::PointsKind,
    /// Positive, except a negative `adjust`.
    pub amount: i64,
    pub lot_id: Option<i64>,
    pub order_id: Option<i64>,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// `grant` (a lot that expires) or `adjust` (a signed correction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsOperationKind {
    Grant,
    Adjust,
}

impl PointsOperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointsOperationKind::Grant => "grant",
            PointsOperationKind::Adjust => "adjust",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "grant" => Some(PointsOperationKind::Grant),
            "adjust" => Some(PointsOperationKind::Adjust),
            _ => None,
        }
    }
}

/// An admin's grant or adjustment, keyed by `(admin_id, idempotency_key)`.
#[derive(Debug, Clone)]
pub struct NewPointsOperation {
    pub admin_id: i64,
    pub idempotency_key: String,
    /// Hash of the request as sent: a replay must match it.
    pub request_hash: String,
    pub user_id: i64,
    pub kind: PointsOperationKind,
    /// Positive for a grant; signed, non-zero for an adjustment.
    pub amount: i64,
    pub reason: String,
    /// The grant's lot expiry (`None`: never; adjustments never expire).
    pub expires_at: Option<Timestamp>,
}

/// An applied operation, with the account as it left it (a replay answers the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsOperationRecord {
    pub id: i64,
    pub admin_id: i64,
    pub user_id: i64,
    pub kind: PointsOperationKind,
    pub amount: i64,
    pub reason: String,
    pub expires_at: Option<Timestamp>,
    pub balance_after: i64,
    pub held_after: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub enum PointsOperationOutcome {
    Done(PointsOperationRecord),
    /// The key was used before with the same request: its original result.
    Replayed(PointsOperationRecord),
    /// The key was used before with another request; nothing changed.
    Mismatch,
    /// No such buyer; nothing changed.
    UnknownUser,
    /// A negative adjustment larger than the unheld balance; nothing changed.
    Insufficient,
}

/// Points held for one order, and the account after the change that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsHold {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub status: crate::domain::points::HoldStatus,
    pub balance: i64,
    pub held: i64,
}

/// One delivery of an `order.confirmed` event to the earning consumer.
#[derive(Debug, Clone)]
pub struct Earning {
    /// The consumer's name in `processed_events` (`points-earn`).
    pub consumer: &'static str,
    pub event_id: i64,
    pub order_id: i64,
    pub rate_bps: i64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarnOutcome {
    Earned {
        user_id: i64,
        amount: i64,
        lot_id: i64,
    },
    /// Recorded as processed, but the purchase earns nothing (too small, or no such order).
    Nothing,
    /// This consumer processed this event before (another node, or a redelivery).
    AlreadyProcessed,
}

/// What one expiry of a buyer's due lots took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredPoints {
    pub user_id: i64,
    pub amount: i64,
    pub lots: usize,
    pub balance: i64,
    pub held: i64,
}

/// One account beside its ledger and its lots (see `crate::verify`).
#[derive(Debug, Clone, Default)]
pub struct PointsAccountAudit {
    pub user_id: i64,
    pub balance: i64,
    pub held: i64,
    /// Sum of ledger amounts per kind.
    pub ledger: Vec<(crate::domain::points::PointsKind, i64)>,
    pub lots_remaining: i64,
    pub lots_held: i64,
}

/// One lot beside the ledger rows that reference it.
#[derive(Debug, Clone)]
pub struct PointsLotAudit {
    pub lot_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub remaining: i64,
    pub held: i64,
    pub ledger: Vec<(crate::domain::points::PointsKind, i64)>,
}

/// One order's points hold beside the ledger rows of that order.
#[derive(Debug, Clone)]
pub struct PointsHoldAudit {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub status: crate::domain::points::HoldStatus,
    pub ledger: Vec<(crate::domain::points::PointsKind, i64)>,
}

#[derive(Debug, Clone, Default)]
pub struct PointsAudit {
    pub accounts: Vec<PointsAccountAudit>,
    pub lots: Vec<PointsLotAudit>,
    pub holds: Vec<PointsHoldAudit>,
}

/// The rows a points audit reads, each backend in its own dialect, from one snapshot;
/// [`PointsAudit::assemble`] puts them together the same way for both.
#[derive(Debug, Clone, Default)]
pub struct PointsAuditRows {
    /// `(user_id, balance, held)`.
    pub accounts: Vec<(i64, i64, i64)>,
    /// `(user_id, kind, Σ amount)`.
    pub ledger_by_user: Vec<(i64, String, i64)>,
    /// `(user_id, Σ remaining, Σ held)` of the user's lots.
    pub lot_sums: Vec<(i64, i64, i64)>,
    /// `(lot_id, user_id, amount, remaining, held)`.
    pub lots: Vec<(i64, i64, i64, i64, i64)>,
    /// `(lot_id, kind, Σ amount)`.
    pub ledger_by_lot: Vec<(i64, String, i64)>,
    /// `(order_id, user_id, amount, status)`.
    pub holds: Vec<(i64, i64, i64, String)>,
    /// `(order_id, kind, Σ amount)` of hold, release, spend and refund rows.
    pub ledger_by_order: Vec<(i64, String, i64)>,
}

type KindSums = std::collections::BTreeMap<i64, Vec<(crate::domain::points::PointsKind, i64)>>;

fn points_kind_sums(rows: Vec<(i64, String, i64)>) -> super::StoreResult<KindSums> {
    let mut sums = KindSums::new();
    for (key, raw, sum) in rows {
        let kind = crate::domain::points::PointsKind::parse(&raw)
            .ok_or_else(|| super::StoreError::Corrupt(format!("points kind {raw:?}")))?;
        sums.entry(key).or_default().push((kind, sum));
    }
    Ok(sums)
}

impl PointsAudit {
    /// Every account that has a row anywhere (account, ledger or lot), every lot and every
    /// hold, each with its ledger sums.
    pub fn assemble(rows: PointsAuditRows) -> super::StoreResult<PointsAudit> {
        use std::collections::BTreeMap;
        let by_user = points_kind_sums(rows.ledger_by_user)?;
        let mut by_lot = points_kind_sums(rows.ledger_by_lot)?;
        let mut by_order = points_kind_sums(rows.ledger_by_order)?;
        let lot_sums: BTreeMap<i64, (i64, i64)> = rows
            .lot_sums
            .into_iter()
            .map(|(u, r, h)| (u, (r, h)))
            .collect();
        let balances: BTreeMap<i64, (i64, i64)> = rows
            .accounts
            .into_iter()
            .map(|(u, b, h)| (u, (b, h)))
            .collect();
        let mut users: Vec<i64> = balances.keys().copied().collect();
        users.extend(by_user.keys().copied());
        users.extend(lot_sums.keys().copied());
        users.sort_unstable();
        users.dedup();
        let accounts = users
            .into_iter()
            .map(|user_id| {
                let (balance, held) = balances.get(&user_id).copied().unwrap_or_default();
                let (lots_remaining, lots_held) =
                    lot_sums.get(&user_id).copied().unwrap_or_default();
                PointsAccountAudit {
                    user_id,
                    balance,
                    held,
                    ledger: by_user.get(&user_id).cloned().unwrap_or_default(),
                    lots_remaining,
                    lots_held,
                }
            })
            .collect();
        let lots = rows
            .lots
            .into_iter()
            .map(
                |(lot_id, user_id, amount, remaining, held)| PointsLotAudit {
                    lot_id,
                    user_id,
                    amount,
                    remaining,
                    held,
                    ledger: by_lot.remove(&lot_id).unwrap_or_default(),
                },
            )
            .collect();
        let holds = rows
            .holds
            .into_iter()
            .map(|(order_id, user_id, amount, raw)| {
                let status = crate::domain::points::HoldStatus::parse(&raw).ok_or_else(|| {
                    super::StoreError::Corrupt(format!("points hold status {raw:?}"))
                })?;
                Ok(PointsHoldAudit {
                    order_id,
                    user_id,
                    amount,
                    status,
                    ledger: by_order.remove(&order_id).unwrap_or_default(),
                })
            })
            .collect::<super::StoreResult<_>>()?;
        Ok(PointsAudit {
            accounts,
            lots,
            holds,
        })
    }
}
