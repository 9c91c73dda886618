//! The checks of stock, orders, coupon campaigns and what orders hold of coupons and
//! points: each balance replayed from its ledger, each count from its rows.

use super::report::Report;
use crate::domain::coupon::CouponStatus;
use crate::domain::order::MovementKind;
use crate::domain::points::HoldStatus;
use crate::domain::{OrderStatus, Won};
use crate::store::{Audit, BenefitsAudit, CouponAudit, OrderAudit, OrderBenefitsAudit, StockAudit};

/// Where an order's coupon and points hold must be for the order's status, derived from
/// the steps that moved them there (`OrderStatus::benefit_step`): held while the order is
/// open; used and spent once paid (and still when confirmed); the coupon no longer linked
/// to the order once it is issued again, the points released or refunded.
fn expected_benefits(status: OrderStatus) -> (Option<CouponStatus>, HoldStatus) {
    let entered = match status {
        OrderStatus::Confirmed => OrderStatus::Paid,
        other => other,
    };
    match entered.benefit_step() {
        None => (Some(CouponStatus::Held), HoldStatus::Held),
        Some(step) => {
            let coupon = step.coupon.1;
            (
                (coupon != CouponStatus::Issued).then_some(coupon),
                step.points,
            )
        }
    }
}

/// Each order's discount equals its coupon's terms applied to its total, its coupon and
/// points hold follow its status, and no coupon is held or used by an order that does not
/// name it.
pub(super) fn check_benefits(audit: &BenefitsAudit, problems: &mut Vec<String>) {
    for o in &audit.orders {
        check_order_benefits(o, problems);
    }
    for c in &audit.stray_coupons {
        problems.push(format!(
            "user coupon {} is {} by order {:?}, which does not name it",
            c.coupon_id,
            c.status.as_str(),
            c.order_id
        ));
    }
}

fn check_order_benefits(o: &OrderBenefitsAudit, problems: &mut Vec<String>) {
    let id = o.order_id;
    let (coupon_status, hold_status) = expected_benefits(o.status);
    match &o.coupon {
        Some(c) => {
            let expected = Won::new("total", o.total)
                .ok()
                .and_then(|total| c.terms.discount_for(total).ok())
                .map(Won::get);
            if expected != Some(o.discount) {
                problems.push(format!(
                    "order {id}: discount {} but coupon {} gives {expected:?}",
                    o.discount, c.coupon_id
                ));
            }
            let linked = c.order_id == Some(id);
            let fine = match coupon_status {
                Some(status) => linked && c.status == status,
                None => !linked,
            };
            if !fine {
                problems.push(format!(
                    "order {id} ({}): coupon {} is {} for order {:?}",
                    o.status.as_str(),
                    c.coupon_id,
                    c.status.as_str(),
                    c.order_id
                ));
            }
        }
        None if o.discount != 0 => {
            problems.push(format!(
                "order {id}: discount {} without a coupon",
                o.discount
            ));
        }
        None => {}
    }
    let hold = o.points_hold;
    let fine = match hold {
        Some((status, amount)) => amount == o.points_used && status == hold_status,
        None => o.points_used == 0,
    };
    if !fine {
        problems.push(format!(
            "order {id} ({}): uses {} points but its hold is {:?}",
            o.status.as_str(),
            o.points_used,
            hold
        ));
    }
}

/// A campaign's count must equal its rows and never exceed its total; nobody holds two.
pub(super) fn check_campaign(c: &CouponAudit, problems: &mut Vec<String>) {
    let id = c.campaign_id;
    if c.issued != c.rows {
        problems.push(format!(
            "coupon campaign {id}: issued is {} but {} user coupons exist",
            c.issued, c.rows
        ));
    }
    if c.issued < 0 || c.issued > c.total_quantity {
        problems.push(format!(
            "coupon campaign {id}: issued {} of a total of {}",
            c.issued, c.total_quantity
        ));
    }
    if c.duplicates > 0 {
        problems.push(format!(
            "coupon campaign {id}: {} coupon(s) held beyond one per buyer",
            c.duplicates
        ));
    }
}

fn sum(entries: &[(MovementKind, i64)], kind: MovementKind) -> i64 {
    entries
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, q)| q)
        .sum()
}

pub fn check(audit: &Audit) -> Report {
    let mut problems = Vec::new();
    for stock in &audit.stock {
        check_stock(stock, &mut problems);
    }
    for order in &audit.orders {
        check_order(order, &mut problems);
    }
    for b in &audit.limit_breaches {
        problems.push(format!(
            "user {} holds {} units of product {} (limit {})",
            b.user_id, b.units, b.product_id, b.max_per_user
        ));
    }
    Report {
        products: audit.stock.len(),
        orders: audit.orders.len(),
        campaigns: 0,
        problems,
    }
}

fn check_stock(s: &StockAudit, problems: &mut Vec<String>) {
    let p = s.product_id;
    // Replay the ledger with the same effect function the writers use.
    let (on_hand, held) = s.ledger.iter().fold((0, 0), |(o, h), (kind, q)| {
        let (d_o, d_h) = kind.effect(*q);
        (o + d_o, h + d_h)
    });
    if on_hand != s.on_hand {
        problems.push(format!(
            "product {p}: on_hand is {} but the ledger sums to {on_hand}",
            s.on_hand
        ));
    }
    if held != s.held {
        problems.push(format!(
            "product {p}: held is {} but the ledger sums to {held}",
            s.held
        ));
    }
    if s.held != s.open_order_units {
        problems.push(format!(
            "product {p}: held is {} but open orders hold {}",
            s.held, s.open_order_units
        ));
    }
    if s.held < 0 || s.on_hand < 0 || s.held > s.on_hand {
        problems.push(format!(
            "product {p}: impossible balance on_hand={} held={}",
            s.on_hand, s.held
        ));
    }
}

/// What each kind of stock movement must add up to for an order in `status`, as a
/// multiple of the order's units: (hold, release, commit, return).
fn expected_movements(status: OrderStatus) -> (i64, i64, i64, i64) {
    match status {
        OrderStatus::PendingPayment => (1, 0, 0, 0),
        OrderStatus::Paid | OrderStatus::Confirmed => (1, 0, 1, 0),
        OrderStatus::Cancelled => (1, 1, 0, 0),
        OrderStatus::Refunded => (1, 0, 1, 1),
    }
}

fn check_order(o: &OrderAudit, problems: &mut Vec<String>) {
    let id = o.order_id;
    if o.items_total != o.total || o.partner_subtotals != o.total {
        problems.push(format!(
            "order {id}: total {} but items sum to {} and partner orders to {}",
            o.total, o.items_total, o.partner_subtotals
        ));
    }
    if o.payable != o.total - o.discount - o.points_used || o.payable < 0 {
        problems.push(format!(
            "order {id}: payable {} ≠ total − discount − points",
            o.payable
        ));
    }
    let (hold, release, commit, ret) = expected_movements(o.status);
    let actual = [
        (MovementKind::Hold, hold * o.item_units),
        (MovementKind::Release, release * o.item_units),
        (MovementKind::Commit, commit * o.item_units),
        // Parts cancelled on their own returned their units while the rest went on.
        (
            MovementKind::Return,
            (ret * o.item_units).max(o.shares.cancelled_units),
        ),
    ];
    for (kind, expected) in actual {
        let moved = sum(&o.movements, kind);
        if moved != expected {
            problems.push(format!(
                "order {id} ({}): {} movements total {moved}, expected {expected}",
                o.status.as_str(),
                kind.as_str(),
            ));
        }
    }
    check_shares(o, problems);
}

/// The parts' shares add up to the order's discount, points and payable; each part pays
/// its subtotal less its shares; the money booked back is the payable of the parts
/// cancelled on their own and of those returned after confirmation, or all of it once the
/// order is refunded.
fn check_shares(o: &OrderAudit, problems: &mut Vec<String>) {
    let id = o.order_id;
    let s = &o.shares;
    if (s.discounts, s.points, s.payables) != (o.discount, o.points_used, o.payable) {
        problems.push(format!(
            "order {id}: discount/points/payable {}/{}/{} but its partner orders share {}/{}/{}",
            o.discount, o.points_used, o.payable, s.discounts, s.points, s.payables
        ));
    }
    if s.inconsistent_parts > 0 {
        problems.push(format!(
            "order {id}: {} partner order(s) whose payable is not subtotal − discount − points",
            s.inconsistent_parts
        ));
    }
    let owed_back = match o.status {
        OrderStatus::Refunded => o.payable,
        _ => s.cancelled_payables + s.returned_payables,
    };
    if s.refunded != owed_back {
        problems.push(format!(
            "order {id} ({}): {} won booked as refunded, expected {owed_back}",
            o.status.as_str(),
            s.refunded
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus, movements: Vec<(MovementKind, i64)>) -> OrderAudit {
        OrderAudit {
            order_id: 1,
            status,
            total: 100,
            discount: 0,
            points_used: 0,
            payable: 100,
            items_total: 100,
            partner_subtotals: 100,
            item_units: 2,
            movements,
            shares: crate::store::audit::OrderSharesAudit {
                payables: 100,
                refunded: if status == OrderStatus::Refunded {
                    100
                } else {
                    0
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_part_cancelled_on_its_own_returns_its_units_and_its_payable() {
        use MovementKind::{Commit, Hold, Return};
        // Two units over two parts; the part with one unit and 40 won was cancelled.
        let mut o = order(OrderStatus::Paid, vec![(Hold, 2), (Commit, 2), (Return, 1)]);
        o.shares.cancelled_units = 1;
        o.shares.cancelled_payables = 40;
        o.shares.refunded = 40;
        let mut problems = Vec::new();
        check_order(&o, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // Its refund not booked, and shares that do not add up, are both reported.
        o.shares.refunded = 0;
        o.shares.payables = 90;
        o.shares.inconsistent_parts = 1;
        check_order(&o, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("0 won booked as refunded, expected 40"),
            "{text}"
        );
        assert!(text.contains("partner orders share 0/0/90"), "{text}");
        assert!(text.contains("1 partner order(s) whose payable"), "{text}");
        // Once the rest is refunded, every unit is returned and all of it is owed back.
        let mut refunded = order(
            OrderStatus::Refunded,
            vec![(Hold, 2), (Commit, 2), (Return, 2)],
        );
        refunded.shares.cancelled_units = 1;
        let mut problems = Vec::new();
        check_order(&refunded, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_part_returned_after_confirmation_books_its_payable_back_and_moves_no_stock() {
        use MovementKind::{Commit, Hold};
        // The goods went back to the seller, not to the stock ledger: no return movement.
        let mut o = order(OrderStatus::Confirmed, vec![(Hold, 2), (Commit, 2)]);
        o.shares.returned_payables = 60;
        o.shares.refunded = 60;
        let mut problems = Vec::new();
        check_order(&o, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // Its money not booked back is reported.
        o.shares.refunded = 0;
        check_order(&o, &mut problems);
        assert_eq!(
            problems,
            ["order 1 (confirmed): 0 won booked as refunded, expected 60"]
        );
    }

    #[test]
    fn balanced_books_are_clean() {
        let audit = Audit {
            stock: vec![StockAudit {
                product_id: 1,
                on_hand: 8,
                held: 0,
                ledger: vec![
                    (MovementKind::Inbound, 10),
                    (MovementKind::Hold, 2),
                    (MovementKind::Commit, 2),
                ],
                open_order_units: 0,
            }],
            orders: vec![order(
                OrderStatus::Paid,
                vec![(MovementKind::Hold, 2), (MovementKind::Commit, 2)],
            )],
            limit_breaches: vec![],
        };
        let report = check(&audit);
        assert!(report.is_clean(), "{:?}", report.problems);
    }

    #[test]
    fn coupon_counts_must_match_their_rows() {
        let mut problems = Vec::new();
        let clean = CouponAudit {
            campaign_id: 3,
            total_quantity: 10,
            issued: 4,
            rows: 4,
            duplicates: 0,
        };
        check_campaign(&clean, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let broken = CouponAudit {
            issued: 11,
            rows: 9,
            duplicates: 1,
            ..clean
        };
        check_campaign(&broken, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("issued is 11 but 9 user coupons exist"),
            "{text}"
        );
        assert!(text.contains("issued 11 of a total of 10"), "{text}");
        assert!(
            text.contains("1 coupon(s) held beyond one per buyer"),
            "{text}"
        );
    }

    fn benefits(status: OrderStatus) -> OrderBenefitsAudit {
        use crate::domain::coupon::{CouponTerms, Discount, DiscountType};
        let (coupon, hold) = expected_benefits(status);
        OrderBenefitsAudit {
            order_id: 5,
            status,
            total: 10_000,
            discount: 1_000,
            points_used: 300,
            coupon: Some(crate::store::OrderCouponAudit {
                coupon_id: 9,
                status: coupon.unwrap_or(CouponStatus::Issued),
                order_id: coupon.map(|_| 5),
                terms: CouponTerms {
                    discount: Discount::new(DiscountType::Percent, 10, None).unwrap(),
                    min_order_amount: None,
                },
            }),
            points_hold: Some((hold, 300)),
        }
    }

    #[test]
    fn coupons_and_points_follow_their_order() {
        let statuses = [
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ];
        let clean = BenefitsAudit {
            orders: statuses.into_iter().map(benefits).collect(),
            stray_coupons: vec![],
        };
        let mut problems = Vec::new();
        check_benefits(&clean, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let mut wrong_discount = benefits(OrderStatus::Paid);
        wrong_discount.discount = 999;
        let mut coupon_left_held = benefits(OrderStatus::Cancelled);
        if let Some(c) = coupon_left_held.coupon.as_mut() {
            c.status = CouponStatus::Held;
            c.order_id = Some(5);
        }
        let mut points_unspent = benefits(OrderStatus::Paid);
        points_unspent.points_hold = Some((HoldStatus::Held, 300));
        let mut no_hold = benefits(OrderStatus::PendingPayment);
        no_hold.points_hold = None;
        let broken = BenefitsAudit {
            orders: vec![wrong_discount, coupon_left_held, points_unspent, no_hold],
            stray_coupons: vec![crate::store::StrayCoupon {
                coupon_id: 4,
                status: CouponStatus::Used,
                order_id: Some(8),
            }],
        };
        check_benefits(&broken, &mut problems);
        let text = problems.join("\n");
        assert_eq!(problems.len(), 5, "{text}");
        assert!(
            text.contains("discount 999 but coupon 9 gives Some(1000)"),
            "{text}"
        );
        assert!(
            text.contains("(cancelled): coupon 9 is held for order Some(5)"),
            "{text}"
        );
        assert!(
            text.contains("(paid): uses 300 points but its hold is Some((Held, 300))"),
            "{text}"
        );
        assert!(
            text.contains("(pending_payment): uses 300 points but its hold is None"),
            "{text}"
        );
        assert!(
            text.contains("user coupon 4 is used by order Some(8)"),
            "{text}"
        );
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let audit = Audit {
            stock: vec![StockAudit {
                product_id: 1,
                on_hand: 9,
                held: 1,
                ledger: vec![(MovementKind::Inbound, 10), (MovementKind::Hold, 2)],
                open_order_units: 2,
            }],
            orders: vec![order(OrderStatus::Cancelled, vec![(MovementKind::Hold, 2)])],
            limit_breaches: vec![],
        };
        let report = check(&audit);
        let text = report.problems.join("\n");
        assert!(
            text.contains("on_hand is 9 but the ledger sums to 10"),
            "{text}"
        );
        assert!(
            text.contains("held is 1 but the ledger sums to 2"),
            "{text}"
        );
        assert!(text.contains("open orders hold 2"), "{text}");
        assert!(
            text.contains("release movements total 0, expected 2"),
            "{text}"
        );
    }
}
