//! What `stampede verify` checks of loyalty points.

use crate::domain::points::{HoldStatus, PointsKind};
use crate::store::{PointsAudit, PointsHoldAudit};

fn replay(ledger: &[(PointsKind, i64)]) -> (i64, i64) {
    ledger.iter().fold((0, 0), |(b, h), (kind, amount)| {
        let (d_b, d_h) = kind.effect(*amount);
        (b + d_b, h + d_h)
    })
}

fn sum_of(ledger: &[(PointsKind, i64)], kind: PointsKind) -> i64 {
    ledger
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, a)| a)
        .sum()
}

/// What `stampede verify` checks of points, one line per difference:
///
/// - per account: `balance` and `held` equal the replay of its ledger with
///   [`PointsKind::effect`] — `balance = Σ(earn + adjust + refund − spend − expire)`,
///   `held = Σ(hold − release − spend)` (a spend always spends a whole open hold) — and equal
///   the sums of its lots' `remaining` and `held`; `0 <= held <= balance`;
/// - per lot: `remaining` and `held` equal the replay of the rows that reference it,
///   `0 <= held <= remaining <= amount`;
/// - per order's hold: its rows match its status (`held`: holds = amount; `released`: and
///   releases = amount; `spent`: and spends = amount; `refunded`: and refunds = amount),
///   and what it has refunded is the whole amount once `refunded`, otherwise the points of
///   the order's partner orders cancelled on their own (see [`check_hold`]).
pub fn check(audit: &PointsAudit, problems: &mut Vec<String>) {
    for a in &audit.accounts {
        let user = a.user_id;
        let (balance, held) = replay(&a.ledger);
        if (balance, held) != (a.balance, a.held) {
            problems.push(format!(
                "points of user {user}: balance/held are {}/{} but the ledger sums to {balance}/{held}",
                a.balance, a.held
            ));
        }
        if (a.lots_remaining, a.lots_held) != (a.balance, a.held) {
            problems.push(format!(
                "points of user {user}: balance/held are {}/{} but the lots hold {}/{}",
                a.balance, a.held, a.lots_remaining, a.lots_held
            ));
        }
        if a.held < 0 || a.held > a.balance {
            problems.push(format!(
                "points of user {user}: impossible balance {} held {}",
                a.balance, a.held
            ));
        }
    }
    for lot in &audit.lots {
        let (remaining, held) = replay(&lot.ledger);
        if (remaining, held) != (lot.remaining, lot.held) {
            problems.push(format!(
                "point lot {}: remaining/held are {}/{} but its ledger rows sum to {remaining}/{held}",
                lot.lot_id, lot.remaining, lot.held
            ));
        }
        if lot.held < 0 || lot.held > lot.remaining || lot.remaining > lot.amount {
            problems.push(format!(
                "point lot {}: impossible remaining {} held {} of {}",
                lot.lot_id, lot.remaining, lot.held, lot.amount
            ));
        }
    }
    for hold in &audit.holds {
        check_hold(hold, problems);
    }
}

/// One order's hold: its ledger rows by kind, and its `refunded` counter. A part cancelled
/// or returned refunds its `points_used` while the hold stays `spent`; refunding the order
/// refunds the rest, so a `refunded` hold has given back all of it. An order that was never paid has
/// no part cancelled on its own, so its hold has refunded nothing.
fn check_hold(hold: &PointsHoldAudit, problems: &mut Vec<String>) {
    let owed_back = match hold.status {
        HoldStatus::Refunded => hold.amount,
        HoldStatus::Held | HoldStatus::Released | HoldStatus::Spent => hold.taken_back_points,
    };
    if hold.refunded != owed_back {
        problems.push(format!(
            "points hold of order {} ({}): refunded {}, expected {owed_back}",
            hold.order_id,
            hold.status.as_str(),
            hold.refunded,
        ));
    }
    let (h, r, s, f) = hold.status.expected_rows();
    for (kind, factor) in [
        (PointsKind::Hold, h),
        (PointsKind::Release, r),
        (PointsKind::Spend, s),
        (PointsKind::Refund, f),
    ] {
        let moved = sum_of(&hold.ledger, kind);
        // A spent hold refunds the shares of cancelled parts before the whole order
        // is refunded; `refunded` counts them.
        let expected = match (kind, hold.status) {
            (PointsKind::Refund, HoldStatus::Spent) => hold.refunded,
            _ => factor * hold.amount,
        };
        if moved != expected {
            problems.push(format!(
                "points hold of order {} ({}): {} rows total {moved}, expected {expected}",
                hold.order_id,
                hold.status.as_str(),
                kind.as_str(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PointsAccountAudit, PointsLotAudit};

    fn books() -> PointsAudit {
        // Earned 1000 in lot 1; 300 held for order 7, of which the whole hold was spent;
        // 100 expired.
        let lot_rows = vec![
            (PointsKind::Earn, 1000),
            (PointsKind::Hold, 300),
            (PointsKind::Spend, 300),
            (PointsKind::Expire, 100),
        ];
        PointsAudit {
            accounts: vec![PointsAccountAudit {
                user_id: 5,
                balance: 600,
                held: 0,
                ledger: lot_rows.clone(),
                lots_remaining: 600,
                lots_held: 0,
            }],
            lots: vec![PointsLotAudit {
                lot_id: 1,
                user_id: 5,
                amount: 1000,
                remaining: 600,
                held: 0,
                ledger: lot_rows,
            }],
            holds: vec![PointsHoldAudit {
                order_id: 7,
                user_id: 5,
                amount: 300,
                status: HoldStatus::Spent,
                refunded: 0,
                taken_back_points: 0,
                ledger: vec![(PointsKind::Hold, 300), (PointsKind::Spend, 300)],
            }],
        }
    }

    #[test]
    fn balanced_points_are_clean() {
        let mut problems = Vec::new();
        check(&books(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn every_kind_of_points_drift_is_reported() {
        let mut audit = books();
        audit.accounts[0].balance = 700;
        audit.lots[0].held = 50;
        audit.holds[0].status = HoldStatus::Refunded;
        let mut problems = Vec::new();
        check(&audit, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("balance/held are 700/0 but the ledger sums to 600/0"),
            "{text}"
        );
        assert!(text.contains("but the lots hold 600/0"), "{text}");
        assert!(
            text.contains("point lot 1: remaining/held are 600/50"),
            "{text}"
        );
        assert!(text.contains("refund rows total 0, expected 300"), "{text}");
    }

    #[test]
    fn a_hold_refunds_its_cancelled_parts_points_or_all_of_it_once_refunded() {
        // A part with 120 of the 300 points was cancelled on its own: 120 refunded.
        let mut audit = books();
        let hold = &mut audit.holds[0];
        hold.taken_back_points = 120;
        hold.refunded = 120;
        hold.ledger.push((PointsKind::Refund, 120));
        let mut problems = Vec::new();
        check_hold(&audit.holds[0], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        // Its counter and refund rows agree with each other but not with the part.
        let mut drifted = audit.holds[0].clone();
        drifted.refunded = 100;
        drifted.ledger[2] = (PointsKind::Refund, 100);
        check_hold(&drifted, &mut problems);
        assert_eq!(
            problems,
            ["points hold of order 7 (spent): refunded 100, expected 120"]
        );

        // Refunded with all its rows, but its counter short of the whole hold.
        let mut refunded = audit.holds[0].clone();
        refunded.status = HoldStatus::Refunded;
        refunded.ledger[2] = (PointsKind::Refund, 300);
        problems.clear();
        check_hold(&refunded, &mut problems);
        assert_eq!(
            problems,
            ["points hold of order 7 (refunded): refunded 120, expected 300"]
        );
        refunded.refunded = 300;
        problems.clear();
        check_hold(&refunded, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
