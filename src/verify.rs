//! `stampede verify`: recomputes every balance from its ledger and every count from its
//! rows, and lists each difference (DESIGN §1). Clean means no problems at all.

use crate::cluster::coupon_gate::CouponGate;
use crate::domain::order::MovementKind;
use crate::domain::OrderStatus;
use crate::store::{Audit, CouponAudit, OrderAudit, StockAudit, Store};

#[derive(Debug, Default)]
pub struct Report {
    pub products: usize,
    pub orders: usize,
    pub campaigns: usize,
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub async fn run(store: &dyn Store) -> anyhow::Result<Report> {
    let mut report = check(&store.audit().await?);
    // A separate read from the audit's snapshot: an entry is linked after its order
    // commits, so a later read can only find more orders, never miss one.
    for b in store.waitlist_audit().await? {
        report.problems.push(format!(
            "waitlist entry {} ({}) of user {}: order {:?} is not that buyer's order of its product and quantity",
            b.entry_id, b.status, b.user_id, b.order_id
        ));
    }
    let campaigns = store.coupon_audit().await?;
    report.campaigns = campaigns.len();
    for campaign in &campaigns {
        check_campaign(campaign, &mut report.problems);
    }
    // Points: accounts, lots and holds against their ledger (rules in `crate::points`).
    crate::points::check_audit(&store.points_audit().await?, &mut report.problems);
    Ok(report)
}

/// A campaign's count must equal its rows and never exceed its total; nobody holds two.
fn check_campaign(c: &CouponAudit, problems: &mut Vec<String>) {
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

/// Differences between the Redis coupon gate and the database, one line each; none
/// without Redis. The database is right: `stampede verify --repair` resets the gate.
pub async fn coupon_gate(store: &dyn Store, gate: &CouponGate) -> anyhow::Result<Vec<String>> {
    gate.differences(store).await
}

/// What `stampede verify --repair` does: resets the Redis coupon gate from the database;
/// returns one line per campaign it changed.
pub async fn repair_coupon_gate(
    store: &dyn Store,
    gate: &CouponGate,
) -> anyhow::Result<Vec<String>> {
    gate.repair(store).await
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
        (MovementKind::Hold, hold),
        (MovementKind::Release, release),
        (MovementKind::Commit, commit),
        (MovementKind::Return, ret),
    ];
    for (kind, factor) in actual {
        let moved = sum(&o.movements, kind);
        if moved != factor * o.item_units {
            problems.push(format!(
                "order {id} ({}): {} movements total {moved}, expected {}",
                o.status.as_str(),
                kind.as_str(),
                factor * o.item_units
            ));
        }
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
        }
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
