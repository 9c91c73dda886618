//! Was the drop correct? Pure judgement over what the client saw (201s, rejections), what
//! the product reads afterwards, and what the admin order listing holds.
//!
//! Stock model (DESIGN §1): a placed order holds units (`held`); payment commits them
//! (`on_hand` drops); a cancel or an expired deadline releases them. So for a product
//! created with `stock` units: committed = stock − on_hand, and held + committed must equal
//! the units of live (not released) orders; available = stock − those units.

use crate::api::{OrderRow, OrderStatus, StockState};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

pub struct Expected {
    pub stock: i64,
    pub quantity: i64,
    pub max_per_user: Option<i64>,
}

/// What the client saw.
#[derive(Default)]
pub struct Seen {
    pub attempts: u64,
    /// Attempts that ended in an order (201, a ticket placed, a replay on a retry).
    pub sold: u64,
    pub out_of_stock: u64,
    pub errors: u64,
    /// Buyers (tokens) that got more units than `max_per_user` in 201s.
    pub tokens_over_limit: u64,
    /// `202` tickets that no node knew any more: the waiting room lost them.
    pub tickets_lost: u64,
    /// `202` tickets still undecided (or unreadable) when the client stopped following.
    pub tickets_unresolved: u64,
}

/// The run's orders for the product, from the admin listing.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct Ledger {
    pub orders: u64,
    pub pending_units: i64,
    pub committed_units: i64,
    pub released_units: i64,
    /// Answered 201 but absent from the listing: an acknowledged order was lost.
    pub acknowledged_missing: u64,
    /// In the listing but never answered 201 (a timed-out request that went through).
    pub unacknowledged: u64,
    pub users_over_limit: u64,
}

impl Ledger {
    pub fn live_units(&self) -> i64 {
        self.pending_units + self.committed_units
    }

    pub fn all_units(&self) -> i64 {
        self.live_units() + self.released_units
    }
}

/// Sums the listed orders (all newer than the run's watermark) that hold `product_id`.
pub fn ledger(
    orders: &[OrderRow],
    product_id: i64,
    acknowledged: &[i64],
    max_per_user: Option<i64>,
) -> Ledger {
    let acknowledged: HashSet<i64> = acknowledged.iter().copied().collect();
    let mut listed = HashSet::new();
    let mut per_user: HashMap<i64, i64> = HashMap::new();
    let mut l = Ledger::default();
    for order in orders {
        let units: i64 = order
            .partner_orders
            .iter()
            .flat_map(|p| &p.items)
            .filter(|i| i.product_id == product_id)
            .map(|i| i.quantity)
            .sum();
        if units == 0 {
            continue;
        }
        l.orders += 1;
        listed.insert(order.id);
        if !acknowledged.contains(&order.id) {
            l.unacknowledged += 1;
        }
        match order.status {
            OrderStatus::PendingPayment => l.pending_units += units,
            OrderStatus::Paid | OrderStatus::Confirmed => l.committed_units += units,
            // A refund returns the committed units to on_hand: net, nothing left the shelf.
            OrderStatus::Cancelled | OrderStatus::Refunded => {
                l.released_units += units;
                continue;
            }
        }
        *per_user.entry(order.user_id).or_default() += units;
    }
    l.acknowledged_missing = acknowledged
        .iter()
        .filter(|id| !listed.contains(id))
        .count() as u64;
    l.users_over_limit =
        max_per_user.map_or(0, |m| per_user.values().filter(|&&u| u > m).count() as u64);
    l
}

#[derive(Serialize, Debug)]
pub struct Verdict {
    pub correct: bool,
    pub oversold: i64,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub text: String,
}

pub fn judge(
    expected: &Expected,
    seen: &Seen,
    product: &Result<StockState, String>,
    ledger: &Result<Ledger, String>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let sold_units = seen.sold as i64 * expected.quantity;
    let server_units = ledger.as_ref().map_or(0, Ledger::all_units);
    let oversold = (sold_units.max(server_units) - expected.stock).max(0);
    if oversold > 0 {
        problems.push(format!(
            "oversold by {oversold} units: {} sold of {} in stock",
            sold_units.max(server_units),
            expected.stock
        ));
    }
    match product {
        Ok(p) => check_stock(expected, seen, p, ledger, &mut problems),
        Err(e) => problems.push(format!(
            "could not read the product back ({e}), so its stock is unchecked"
        )),
    }
    match ledger {
        Ok(l) => check_ledger(expected, seen, l, &mut problems, &mut notes),
        Err(e) => notes.push(format!("the admin order listing was unavailable ({e}); sales are counted from 201 answers only")),
    }
    if seen.tokens_over_limit > 0 {
        problems.push(format!(
            "{} buyers were answered 201 for more than {} units",
            seen.tokens_over_limit,
            expected.max_per_user.unwrap_or(0)
        ));
    }
    if seen.tickets_lost > 0 {
        problems.push(format!(
            "{} tickets answered 202 were lost (no node knew them any more)",
            seen.tickets_lost
        ));
    }
    if seen.tickets_unresolved > 0 {
        problems.push(format!(
            "{} tickets answered 202 never came to an order or a refusal",
            seen.tickets_unresolved
        ));
    }
    if seen.errors > 0 {
        notes.push(format!(
            "{} attempts got no answer (timeouts, connection errors or dropped)",
            seen.errors
        ));
    }
    let correct = problems.is_empty();
    let text = if correct {
        praise(expected, seen, product, ledger)
    } else {
        format!("INCORRECT: {}.", problems.join("; "))
    };
    Verdict {
        correct,
        oversold,
        problems,
        notes,
        text,
    }
}

fn check_stock(
    expected: &Expected,
    seen: &Seen,
    p: &StockState,
    ledger: &Result<Ledger, String>,
    problems: &mut Vec<String>,
) {
    let committed = expected.stock - p.on_hand;
    let live = ledger
        .as_ref()
        .map_or(seen.sold as i64 * expected.quantity, Ledger::live_units);
    if p.held + committed != live {
        problems.push(format!(
            "held {} + committed {committed} = {}, but {live} units are sold",
            p.held,
            p.held + committed
        ));
    }
    if let Ok(l) = ledger {
        if p.held != l.pending_units {
            problems.push(format!(
                "held is {}, but unpaid orders hold {} units",
                p.held, l.pending_units
            ));
        }
    }
    if p.available != expected.stock - live || p.available != p.on_hand - p.held {
        problems.push(format!(
            "available is {}, expected {} (stock {} − {live} sold)",
            p.available,
            expected.stock - live,
            expected.stock
        ));
    }
    let released = ledger.as_ref().map_or(0, |l| l.released_units);
    // "Sold out" while units were still there is a bug too, unless a release brought them back.
    if seen.out_of_stock > 0 && p.available >= expected.quantity && released == 0 {
        problems.push(format!(
            "{} attempts were told out_of_stock while {} units were still available",
            seen.out_of_stock, p.available
        ));
    }
}

fn check_ledger(
    expected: &Expected,
    seen: &Seen,
    l: &Ledger,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    if l.acknowledged_missing > 0 {
        problems.push(format!(
            "{} orders answered 201 are missing from the admin listing",
            l.acknowledged_missing
        ));
    }
    if l.unacknowledged > seen.errors {
        problems.push(format!(
            "{} orders exist that no attempt was answered 201 for",
            l.unacknowledged
        ));
    } else if l.unacknowledged > 0 {
        notes.push(format!(
            "{} orders went through for attempts the client saw fail; they count as sold",
            l.unacknowledged
        ));
    }
    if l.users_over_limit > 0 {
        problems.push(format!(
            "{} buyers hold more than {} units in the listing",
            l.users_over_limit,
            expected.max_per_user.unwrap_or(0)
        ));
    }
    if l.released_units > 0 {
        notes.push(format!(
            "{} units were released again (cancelled or expired orders)",
            l.released_units
        ));
    }
}

fn praise(
    expected: &Expected,
    seen: &Seen,
    product: &Result<StockState, String>,
    ledger: &Result<Ledger, String>,
) -> String {
    let sold_units = ledger
        .as_ref()
        .map_or(seen.sold as i64 * expected.quantity, Ledger::all_units);
    let mut text = format!(
        "correct: sold {sold_units} of {} units ({} orders from {} attempts), nobody oversold",
        expected.stock, seen.sold, seen.attempts
    );
    if let Ok(p) = product {
        text += &format!(
            "; the product reads on_hand {}, held {}, available {}, as the sales require",
            p.on_hand, p.held, p.available
        );
    }
    if let Ok(l) = ledger {
        text += &format!("; the admin listing holds the same {} orders", l.orders);
    }
    if let Some(m) = expected.max_per_user {
        text += &format!("; nobody above the limit of {m} per buyer");
    }
    text + "."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ItemRow, PartnerOrderRow};

    const EXPECTED: Expected = Expected {
        stock: 50,
        quantity: 1,
        max_per_user: None,
    };

    fn seen(sold: u64) -> Seen {
        Seen {
            attempts: 1000,
            sold,
            out_of_stock: 1000 - sold,
            ..Seen::default()
        }
    }

    fn stock(on_hand: i64, held: i64) -> Result<StockState, String> {
        Ok(StockState {
            on_hand,
            held,
            available: on_hand - held,
        })
    }

    fn order(
        id: i64,
        user_id: i64,
        status: OrderStatus,
        product_id: i64,
        quantity: i64,
    ) -> OrderRow {
        OrderRow {
            id,
            user_id,
            status,
            partner_orders: vec![PartnerOrderRow {
                items: vec![ItemRow {
                    product_id,
                    quantity,
                }],
            }],
            coupon_id: None,
            points_used: 0,
        }
    }

    fn pending_ledger(orders: u64) -> Result<Ledger, String> {
        Ok(Ledger {
            orders,
            pending_units: orders as i64,
            ..Ledger::default()
        })
    }

    #[test]
    fn a_clean_sell_out_is_correct() {
        let v = judge(&EXPECTED, &seen(50), &stock(50, 50), &pending_ledger(50));
        assert!(v.correct, "{v:?}");
        assert_eq!(v.oversold, 0);
        assert!(
            v.text.starts_with("correct: sold 50 of 50 units"),
            "{}",
            v.text
        );
        assert!(v.text.contains("nobody oversold"));
    }

    #[test]
    fn selling_more_than_the_stock_is_oversold() {
        let v = judge(&EXPECTED, &seen(53), &stock(50, 53), &pending_ledger(53));
        assert!(!v.correct);
        assert_eq!(v.oversold, 3);
        assert!(
            v.text.starts_with("INCORRECT: oversold by 3 units"),
            "{}",
            v.text
        );
    }

    #[test]
    fn counters_that_disagree_with_the_sales_are_flagged() {
        let v = judge(&EXPECTED, &seen(50), &stock(50, 49), &pending_ledger(50));
        assert!(!v.correct);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("held 49 + committed 0 = 49, but 50 units are sold")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn out_of_stock_while_stock_remains_is_flagged() {
        let v = judge(&EXPECTED, &seen(40), &stock(50, 40), &pending_ledger(40));
        assert!(!v.correct);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("told out_of_stock while 10 units")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_lost_acknowledged_order_is_flagged() {
        let l = Ledger {
            orders: 49,
            pending_units: 49,
            acknowledged_missing: 1,
            ..Ledger::default()
        };
        let v = judge(&EXPECTED, &seen(50), &stock(50, 49), &Ok(l));
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("missing from the admin listing")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn unacknowledged_orders_are_explained_by_client_errors() {
        let s = Seen {
            errors: 2,
            ..seen(48)
        };
        let l = Ledger {
            orders: 50,
            pending_units: 50,
            unacknowledged: 2,
            ..Ledger::default()
        };
        let v = judge(&EXPECTED, &s, &stock(50, 50), &Ok(l));
        assert!(v.correct, "{v:?}");
        assert!(v.notes.iter().any(|n| n.contains("2 orders went through")));
    }

    #[test]
    fn an_unreadable_product_is_not_correct() {
        let v = judge(
            &EXPECTED,
            &seen(50),
            &Err("HTTP 500".into()),
            &pending_ledger(50),
        );
        assert!(!v.correct);
        assert!(v.text.contains("could not read the product back"));
    }

    #[test]
    fn buyers_over_the_limit_are_flagged() {
        let expected = Expected {
            max_per_user: Some(1),
            ..EXPECTED
        };
        let s = Seen {
            tokens_over_limit: 2,
            ..seen(50)
        };
        let v = judge(&expected, &s, &stock(50, 50), &pending_ledger(50));
        assert!(!v.correct);
        assert!(
            v.text
                .contains("2 buyers were answered 201 for more than 1 units"),
            "{}",
            v.text
        );
    }

    #[test]
    fn tickets_that_never_resolve_are_flagged() {
        let lost = Seen {
            tickets_lost: 3,
            ..seen(50)
        };
        let v = judge(&EXPECTED, &lost, &stock(50, 50), &pending_ledger(50));
        assert!(!v.correct);
        assert!(
            v.text.contains("3 tickets answered 202 were lost"),
            "{}",
            v.text
        );
        let unresolved = Seen {
            tickets_unresolved: 1,
            ..seen(50)
        };
        let v = judge(&EXPECTED, &unresolved, &stock(50, 50), &pending_ledger(50));
        assert!(!v.correct);
        assert!(
            v.text.contains("1 tickets answered 202 never came"),
            "{}",
            v.text
        );
    }

    #[test]
    fn the_ledger_sums_the_product_by_status_and_buyer() {
        let orders = [
            order(10, 1, OrderStatus::PendingPayment, 7, 2),
            order(11, 1, OrderStatus::Paid, 7, 1),
            order(12, 2, OrderStatus::Cancelled, 7, 3),
            order(13, 3, OrderStatus::PendingPayment, 8, 5),
            order(14, 4, OrderStatus::PendingPayment, 7, 1),
        ];
        let l = ledger(&orders, 7, &[10, 11, 12, 99], Some(2));
        let expected = Ledger {
            orders: 4,
            pending_units: 3,
            committed_units: 1,
            released_units: 3,
            acknowledged_missing: 1,
            unacknowledged: 1,
            users_over_limit: 1,
        };
        assert_eq!(l, expected);
    }

    #[test]
    fn committed_units_leave_on_hand() {
        let l = Ledger {
            orders: 50,
            pending_units: 30,
            committed_units: 20,
            ..Ledger::default()
        };
        let v = judge(&EXPECTED, &seen(50), &stock(30, 30), &Ok(l));
        assert!(v.correct, "{v:?}");
    }
}
