//! What `stampede verify` compares ([`AuditStore`]): stock accounts, orders and the benefits
//! orders hold, recomputed from their rows.

use super::error::StoreResult;
use crate::domain::coupon::{CouponStatus, CouponTerms};
use crate::domain::order::MovementKind;
use crate::domain::points::HoldStatus;
use crate::domain::OrderStatus;
use async_trait::async_trait;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Everything `stampede verify` compares, recomputed from the rows (see [`Audit`]).
    async fn audit(&self) -> StoreResult<Audit>;
    /// Orders that use a coupon or points beside their coupon and points hold, and held or
    /// used coupons no order names, from one snapshot.
    async fn benefits_audit(&self) -> StoreResult<BenefitsAudit>;
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
    /// What its partner orders share of it, and what was booked back to the buyer.
    pub shares: OrderSharesAudit,
}

/// An order's partner orders' shares and refunds (`sql::ORDER_SHARES_AUDIT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderSharesAudit {
    /// Units of parts cancelled on their own (their stock was returned).
    pub cancelled_units: i64,
    pub discounts: i64,
    pub points: i64,
    pub payables: i64,
    /// Parts whose `payable` is not `subtotal - discount - points_used`.
    pub inconsistent_parts: i64,
    /// `payable` of the parts cancelled on their own.
    pub cancelled_payables: i64,
    /// `payable` of the parts returned after the purchase was confirmed.
    pub returned_payables: i64,
    /// Sum of the order's `refunded` payment rows.
    pub refunded: i64,
}

/// One row of `sql::ORDER_SHARES_AUDIT`.
pub(crate) type OrderSharesRow = (i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// The rows of `sql::ORDER_SHARES_AUDIT` by order id.
pub(crate) fn shares_by_order(
    rows: Vec<OrderSharesRow>,
) -> std::collections::HashMap<i64, OrderSharesAudit> {
    rows.into_iter()
        .map(|r| {
            let shares = OrderSharesAudit {
                cancelled_units: r.1,
                discounts: r.2,
                points: r.3,
                payables: r.4,
                inconsistent_parts: r.5,
                cancelled_payables: r.6,
                returned_payables: r.7,
                refunded: r.8,
            };
            (r.0, shares)
        })
        .collect()
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
    pub points_hold: Option<(HoldStatus, i64)>,
}

/// The user coupon an order names, as stored.
#[derive(Debug, Clone)]
pub struct OrderCouponAudit {
    pub coupon_id: i64,
    pub status: CouponStatus,
    /// The order the coupon names back (held or used), if any.
    pub order_id: Option<i64>,
    pub terms: CouponTerms,
}

/// A held or used coupon whose order does not name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayCoupon {
    pub coupon_id: i64,
    pub status: CouponStatus,
    pub order_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct BenefitsAudit {
    pub orders: Vec<OrderBenefitsAudit>,
    pub stray_coupons: Vec<StrayCoupon>,
}
