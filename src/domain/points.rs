//! Loyalty points (DESIGN §1): the account of a buyer is `balance` and `held`, and every
//! point lives in a *lot* (one earn, grant or positive adjustment) with its own `remaining`,
//! `held` and optional `expires_at`. Everything here is pure, so the rules the stores apply
//! are property-tested once:
//!
//! - which lots a hold or a negative adjustment takes from ([`take_soonest_expiring`]):
//!   the lots that expire first, then lots without an expiry, oldest first within a date;
//! - how many points a confirmed purchase earns ([`earned_points`]);
//! - what each ledger row does to an account and to its lot ([`PointsKind::effect`]), the
//!   one function both the writers' SQL and `stampede verify` follow.
//!
//! Invariants, per account and per lot: `0 <= held <= balance` (`held <= remaining` on a
//! lot); `balance = Σ lots.remaining`, `held = Σ lots.held`; and both equal the replay of the
//! ledger with [`PointsKind::effect`]. Expiry only ever takes the unheld part of a lot
//! (`remaining - held`): points promised to an open order stay until that order spends or
//! releases them, and a released part of an expired lot expires at the next run.

use super::values::Timestamp;
use super::DomainError;
use serde::Serialize;

/// Largest amount of points one grant, adjustment or hold may move.
pub const MAX_POINTS: i64 = 1_000_000_000;
/// Longest reason kept on an admin's grant or adjustment.
pub const MAX_REASON_CHARS: usize = 200;
/// Basis points in one whole (100%).
pub const BPS_PER_WHOLE: i64 = 10_000;

/// A positive amount of points, 1 ..= [`MAX_POINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Points(i64);

impl Points {
    pub fn new(field: &'static str, value: i64) -> Result<Self, DomainError> {
        if !(1..=MAX_POINTS).contains(&value) {
            return Err(DomainError::new(
                field,
                format!("must be between 1 and {MAX_POINTS} points"),
            ));
        }
        Ok(Points(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A signed, non-zero correction of a balance, at most [`MAX_POINTS`] either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PointsDelta(i64);

impl PointsDelta {
    pub fn new(field: &'static str, value: i64) -> Result<Self, DomainError> {
        if value == 0 || !(-MAX_POINTS..=MAX_POINTS).contains(&value) {
            return Err(DomainError::new(
                field,
                format!("must be non-zero and between -{MAX_POINTS} and {MAX_POINTS} points"),
            ));
        }
        Ok(PointsDelta(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// Why an admin moved points: trimmed, 1 ..= [`MAX_REASON_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > MAX_REASON_CHARS {
            return Err(DomainError::new(
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} characters"),
            ));
        }
        Ok(Reason(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kind of a points ledger row. Amounts are positive except `adjust`, which is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PointsKind {
    /// A lot was created: a purchase earned it or an admin granted it.
    Earn,
    /// Points promised to an order, taken from one lot.
    Hold,
    /// A hold given back (the order was cancelled or expired unpaid).
    Release,
    /// A hold used (the order was paid).
    Spend,
    /// The unheld part of a lot passed its `expires_at`.
    Expire,
    /// An admin's correction: a new lot (positive) or points taken from a lot (negative).
    Adjust,
    /// Spent points given back to the lot they came from (the order was refunded).
    Refund,
}

impl PointsKind {
    pub const ALL: [PointsKind; 7] = [
        PointsKind::Earn,
        PointsKind::Hold,
        PointsKind::Release,
        PointsKind::Spend,
        PointsKind::Expire,
        PointsKind::Adjust,
        PointsKind::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PointsKind::Earn => "earn",
            PointsKind::Hold => "hold",
            PointsKind::Release => "release",
            PointsKind::Spend => "spend",
            PointsKind::Expire => "expire",
            PointsKind::Adjust => "adjust",
            PointsKind::Refund => "refund",
        }
    }

    pub fn parse(raw: &str) -> Option<PointsKind> {
        PointsKind::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// `(Δbalance, Δheld)` of a row of `amount` points, on its account and equally on its
    /// lot (`Δremaining, Δheld`). `verify` replays the ledger with exactly this function.
    pub fn effect(self, amount: i64) -> (i64, i64) {
        match self {
            PointsKind::Earn | PointsKind::Adjust | PointsKind::Refund => (amount, 0),
            PointsKind::Hold => (0, amount),
            PointsKind::Release => (0, -amount),
            PointsKind::Spend => (-amount, -amount),
            PointsKind::Expire => (-amount, 0),
        }
    }
}

/// The life of the points held for one order: `held → released`, or `held → spent →
/// refunded`. Every step is a conditional write on the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Held,
    Released,
    Spent,
    Refunded,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Released => "released",
            HoldStatus::Spent => "spent",
            HoldStatus::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<HoldStatus> {
        [
            HoldStatus::Held,
            HoldStatus::Released,
            HoldStatus::Spent,
            HoldStatus::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// A step away from this status: the status it needs, the ledger kind it writes per
    /// lot, and the kind of the earlier rows that say which lots (and how much of each).
    /// `None` for `Held`, which is entered only by a new hold.
    pub fn step(self) -> Option<(HoldStatus, PointsKind, PointsKind)> {
        match self {
            HoldStatus::Held => None,
            HoldStatus::Released => Some((HoldStatus::Held, PointsKind::Release, PointsKind::Hold)),
            HoldStatus::Spent => Some((HoldStatus::Held, PointsKind::Spend, PointsKind::Hold)),
            HoldStatus::Refunded => {
                Some((HoldStatus::Spent, PointsKind::Refund, PointsKind::Spend))
            }
        }
    }

    /// Sums of `(hold, release, spend, refund)` rows of an order in this status, as
    /// multiples of the hold's amount (for `verify`).
    pub fn expected_rows(self) -> (i64, i64, i64, i64) {
        match self {
            HoldStatus::Held => (1, 0, 0, 0),
            HoldStatus::Released => (1, 1, 0, 0),
            HoldStatus::Spent => (1, 0, 1, 0),
            HoldStatus::Refunded => (1, 0, 1, 1),
        }
    }
}

/// What can still be taken from one lot: its unheld remainder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotFree {
    pub lot_id: i64,
    /// `remaining - held`, never negative.
    pub free: i64,
    /// `None` never expires.
    pub expires_at: Option<Timestamp>,
}

impl LotFree {
    /// A hold may take from a lot only before it expires; past `expires_at` the points wait
    /// for the expiry job (an admin's negative adjustment may still take them).
    pub fn holdable_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// The order in which lots are used: soonest `expires_at` first, lots that never expire
/// last, then by id (oldest first).
fn use_order(lot: &LotFree) -> (bool, Option<Timestamp>, i64) {
    (lot.expires_at.is_none(), lot.expires_at, lot.lot_id)
}

/// Takes `amount` points from `lots`, soonest-expiring first: `(lot_id, taken)` in the order
/// taken, each `0 < taken <= free`, summing to `amount`; `None` when the lots hold less.
pub fn take_soonest_expiring(lots: &[LotFree], amount: i64) -> Option<Vec<(i64, i64)>> {
    if amount <= 0 {
        return Some(Vec::new());
    }
    let mut sorted: Vec<&LotFree> = lots.iter().filter(|l| l.free > 0).collect();
    sorted.sort_by_key(|l| use_order(l));
    let mut left = amount;
    let mut taken = Vec::new();
    for lot in sorted {
        if left == 0 {
            break;
        }
        let take = lot.free.min(left);
        taken.push((lot.lot_id, take));
        left -= take;
    }
    (left == 0).then_some(taken)
}

/// Points a purchase of `payable` won earns at `rate_bps`: rounded down, never negative.
pub fn earned_points(payable: i64, rate_bps: i64) -> i64 {
    if payable <= 0 || rate_bps <= 0 {
        return 0;
    }
    let points = i128::from(payable) * i128::from(rate_bps) / i128::from(BPS_PER_WHOLE);
    i64::try_from(points).unwrap_or(i64::MAX)
}

/// What a returned part takes back of the points its purchase earned: its share of the
/// earn lot's `earned` points, `earned × part_payable / earned_on` rounded down, where
/// `earned_on` is the payable of the parts the purchase earned on (so the shares of all
/// parts never add up to more than was earned), but never more than the lot's unheld
/// remainder `unheld`: points already spent, expired or promised to an open order are the
/// buyer's to keep, and a balance never goes below zero.
pub fn earned_share_taken_back(earned: i64, part_payable: i64, earned_on: i64, unheld: i64) -> i64 {
    if earned <= 0 || part_payable <= 0 || earned_on <= 0 || unheld <= 0 {
        return 0;
    }
    let share =
        i128::from(earned) * i128::from(part_payable.min(earned_on)) / i128::from(earned_on);
    i64::try_from(share).unwrap_or(i64::MAX).min(unheld)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lots_strategy() -> impl Strategy<Value = Vec<LotFree>> {
        prop::collection::vec((0i64..50, prop::option::of(0i64..20)), 0..12).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (free, day))| LotFree {
                    lot_id: i as i64 + 1,
                    free,
                    expires_at: day.map(|d| Timestamp::from_millis(d * 86_400_000)),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn points_accept_exactly_their_range(v in any::<i64>()) {
            prop_assert_eq!(Points::new("amount", v).is_ok(), (1..=MAX_POINTS).contains(&v));
        }

        #[test]
        fn deltas_accept_exactly_their_range(v in any::<i64>()) {
            let valid = v != 0 && (-MAX_POINTS..=MAX_POINTS).contains(&v);
            prop_assert_eq!(PointsDelta::new("amount", v).is_ok(), valid);
        }

        #[test]
        fn a_take_is_exact_or_refused(lots in lots_strategy(), amount in 1i64..400) {
            let free: i64 = lots.iter().map(|l| l.free).sum();
            match take_soonest_expiring(&lots, amount) {
                None => prop_assert!(free < amount),
                Some(taken) => {
                    prop_assert_eq!(taken.iter().map(|(_, t)| t).sum::<i64>(), amount);
                    for (id, t) in &taken {
                        let lot = lots.iter().find(|l| l.lot_id == *id).unwrap();
                        prop_assert!(*t > 0 && *t <= lot.free);
                    }
                    let mut ids: Vec<i64> = taken.iter().map(|(id, _)| *id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    prop_assert_eq!(ids.len(), taken.len(), "a lot is taken from once");
                }
            }
        }

        #[test]
        fn a_later_lot_is_touched_only_when_earlier_ones_are_empty(
            lots in lots_strategy(), amount in 1i64..400,
        ) {
            let Some(taken) = take_soonest_expiring(&lots, amount) else {
                return Ok(());
            };
            let last = taken.last().map(|(id, _)| *id);
            let last = lots.iter().find(|l| Some(l.lot_id) == last);
            for lot in lots.iter().filter(|l| l.free > 0) {
                let used = taken.iter().find(|(id, _)| *id == lot.lot_id).map_or(0, |(_, t)| *t);
                if let Some(last) = last {
                    if use_order(lot) < use_order(last) {
                        prop_assert_eq!(used, lot.free, "lot {} expires sooner but was not drained", lot.lot_id);
                    }
                    if use_order(lot) > use_order(last) {
                        prop_assert_eq!(used, 0, "lot {} expires later but was used", lot.lot_id);
                    }
                }
            }
        }

        #[test]
        fn earning_rounds_down_and_stays_within_the_payment(payable in 0i64..=1_000_000_000_000, bps in 0i64..=10_000) {
            let points = earned_points(payable, bps);
            prop_assert!(points >= 0 && points <= payable);
            prop_assert!(i128::from(points) * 10_000 <= i128::from(payable) * i128::from(bps));
            prop_assert!(i128::from(points + 1) * 10_000 > i128::from(payable) * i128::from(bps));
        }

        #[test]
        fn a_return_takes_back_at_most_its_share_and_what_is_left(
            earned in 0i64..=MAX_POINTS,
            payables in prop::collection::vec(0i64..=1_000_000_000, 1..6),
            unheld in 0i64..=MAX_POINTS,
        ) {
            let total: i64 = payables.iter().sum();
            let shares: Vec<i64> = payables
                .iter()
                .map(|p| earned_share_taken_back(earned, *p, total, unheld))
                .collect();
            prop_assert!(shares.iter().sum::<i64>() <= earned);
            for (share, payable) in shares.iter().zip(&payables) {
                prop_assert!(*share >= 0 && *share <= unheld);
                // Rounded down, unless the lot's remainder cut it shorter.
                let exact = i128::from(earned) * i128::from(*payable);
                let floor = i128::from(*share) * i128::from(total.max(1));
                prop_assert!(floor <= exact);
                if *share < unheld && total > 0 {
                    prop_assert!(i128::from(*share + 1) * i128::from(total) > exact);
                }
            }
        }

        #[test]
        fn a_hold_then_its_release_or_spend_balances(amount in 1i64..=MAX_POINTS) {
            let (b, h) = PointsKind::Hold.effect(amount);
            let (rb, rh) = PointsKind::Release.effect(amount);
            prop_assert_eq!((b + rb, h + rh), (0, 0));
            let (sb, sh) = PointsKind::Spend.effect(amount);
            let (fb, fh) = PointsKind::Refund.effect(amount);
            prop_assert_eq!((b + sb + fb, h + sh + fh), (0, 0));
        }
    }

    #[test]
    fn one_percent_of_a_purchase() {
        assert_eq!(earned_points(12_345, 100), 123);
        assert_eq!(earned_points(99, 100), 0);
        assert_eq!(earned_points(-5, 100), 0);
    }

    #[test]
    fn a_returned_part_takes_back_its_share_of_what_is_left() {
        // 26 points earned on 1,950 + 650 won: the 650-won part's share is 6.5, rounded down.
        assert_eq!(earned_share_taken_back(26, 650, 2_600, 26), 6);
        assert_eq!(earned_share_taken_back(26, 1_950, 2_600, 26), 19);
        // Only what the lot still has unheld.
        assert_eq!(earned_share_taken_back(26, 650, 2_600, 4), 4);
        assert_eq!(earned_share_taken_back(26, 650, 2_600, 0), 0);
        // Nothing earned, or a part that cost nothing: nothing to take back.
        assert_eq!(earned_share_taken_back(0, 650, 2_600, 26), 0);
        assert_eq!(earned_share_taken_back(26, 0, 2_600, 26), 0);
        assert_eq!(earned_share_taken_back(26, 650, 0, 26), 0);
    }

    #[test]
    fn soonest_expiry_first_then_never_expiring() {
        let day = |d: i64| Some(Timestamp::from_millis(d * 86_400_000));
        let lots = [
            LotFree {
                lot_id: 1,
                free: 100,
                expires_at: None,
            },
            LotFree {
                lot_id: 2,
                free: 50,
                expires_at: day(9),
            },
            LotFree {
                lot_id: 3,
                free: 30,
                expires_at: day(3),
            },
        ];
        assert_eq!(
            take_soonest_expiring(&lots, 100),
            Some(vec![(3, 30), (2, 50), (1, 20)])
        );
        assert_eq!(take_soonest_expiring(&lots, 181), None);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in PointsKind::ALL {
            assert_eq!(PointsKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PointsKind::parse("bogus"), None);
    }

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(Reason::parse("  goodwill ").unwrap().as_str(), "goodwill");
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse(&"r".repeat(201)).is_err());
        assert!(Reason::parse(&"가".repeat(200)).is_ok());
    }
}
