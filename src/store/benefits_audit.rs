//! What `verify` reads of the coupons and points orders hold. The SQL is portable, so both
//! backends run these statements as they are (in one snapshot each) and share the mapping.

use super::{
    coupon_terms, BenefitsAudit, OrderBenefitsAudit, OrderCouponAudit, StoreError, StoreResult,
    StrayCoupon,
};
use crate::domain::coupon::{CouponStatus, DiscountType};
use crate::domain::points::HoldStatus;
use crate::domain::OrderStatus;

/// Orders that name a coupon, take a discount or points, or have a points hold.
pub(crate) const ORDERS: &str = "SELECT o.id, o.status, o.total, o.discount, o.points_used,
         o.coupon_id, u.status, u.order_id, c.discount_type, c.discount_value, c.max_discount,
         c.min_order_amount, h.status, h.amount
     FROM orders o
     LEFT JOIN user_coupons u ON u.id = o.coupon_id
     LEFT JOIN coupon_campaigns c ON c.id = u.campaign_id
     LEFT JOIN point_holds h ON h.order_id = o.id
     WHERE o.coupon_id IS NOT NULL OR o.discount <> 0 OR o.points_used <> 0
        OR h.order_id IS NOT NULL
     ORDER BY o.id";

/// Held or used coupons whose order does not name them back.
pub(crate) const STRAY_COUPONS: &str = "SELECT u.id, u.status, u.order_id FROM user_coupons u
     LEFT JOIN orders o ON o.id = u.order_id AND o.coupon_id = u.id
     WHERE u.status <> 'issued' AND o.id IS NULL
     ORDER BY u.id";

pub(crate) type OrderRow = (
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

pub(crate) type StrayRow = (i64, String, Option<i64>);

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

fn coupon_status(raw: &str) -> StoreResult<CouponStatus> {
    CouponStatus::parse(raw).ok_or_else(|| corrupt(format!("coupon status {raw:?}")))
}

fn order(row: OrderRow) -> StoreResult<OrderBenefitsAudit> {
    let (order_id, status, total, discount, points_used, coupon_id, coupon_status_raw) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6);
    let status =
        OrderStatus::parse(&status).ok_or_else(|| corrupt(format!("order status {status:?}")))?;
    let coupon = match (coupon_id, coupon_status_raw, row.8) {
        (Some(coupon_id), Some(raw_status), Some(raw_type)) => {
            let kind = DiscountType::parse(&raw_type)
                .ok_or_else(|| corrupt(format!("discount type {raw_type:?}")))?;
            let terms = coupon_terms(kind, row.9.unwrap_or(0), row.10, row.11)
                .map_err(|e| corrupt(format!("user coupon {coupon_id}: {e}")))?;
            Some(OrderCouponAudit {
                coupon_id,
                status: coupon_status(&raw_status)?,
                order_id: row.7,
                terms,
            })
        }
        // The foreign key makes a named coupon exist; report it as corruption otherwise.
        (Some(coupon_id), _, _) => {
            return Err(corrupt(format!(
                "order {order_id}: coupon {coupon_id} missing"
            )))
        }
        _ => None,
    };
    let points_hold = match (row.12, row.13) {
        (Some(raw), Some(amount)) => Some((
            HoldStatus::parse(&raw).ok_or_else(|| corrupt(format!("hold status {raw:?}")))?,
            amount,
        )),
        _ => None,
    };
    Ok(OrderBenefitsAudit {
        order_id,
        status,
        total,
        discount,
        points_used,
        coupon,
        points_hold,
    })
}

pub(crate) fn assemble(orders: Vec<OrderRow>, strays: Vec<StrayRow>) -> StoreResult<BenefitsAudit> {
    Ok(BenefitsAudit {
        orders: orders.into_iter().map(order).collect::<StoreResult<_>>()?,
        stray_coupons: strays
            .into_iter()
            .map(|(coupon_id, status, order_id)| {
                Ok(StrayCoupon {
                    coupon_id,
                    status: coupon_status(&status)?,
                    order_id,
                })
            })
            .collect::<StoreResult<_>>()?,
    })
}
