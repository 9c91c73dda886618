//! First-come coupon campaigns (DESIGN §1: a campaign is an account with `issued` and
//! `total`, and one ledger row per issued user coupon). Everything here is pure: the terms
//! of a campaign parsed from the outside world, its issue window, when an issued coupon
//! expires, and the discount arithmetic an order will apply.

use super::values::{Timestamp, Won, MAX_WON};
use super::DomainError;
use serde::{Deserialize, Serialize};

/// Most coupons one campaign may hand out.
pub const MAX_COUPON_QUANTITY: i64 = 10_000_000;
/// Longest validity of an issued coupon, in days (about ten years).
pub const MAX_VALID_DAYS: i64 = 3650;
pub const MAX_PERCENT: i64 = 100;
const MILLIS_PER_DAY: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscountType {
    /// A fixed number of won off.
    Fixed,
    /// A percentage off, optionally capped by `max_discount`.
    Percent,
}

impl DiscountType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::Fixed => "fixed",
            DiscountType::Percent => "percent",
        }
    }

    pub fn parse(raw: &str) -> Option<DiscountType> {
        match raw {
            "fixed" => Some(DiscountType::Fixed),
            "percent" => Some(DiscountType::Percent),
            _ => None,
        }
    }
}

/// What a coupon takes off an order. Built only through [`Discount::new`], so a value
/// always holds: fixed 1..=MAX_WON won, percent 1..=100 with an optional positive cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    Fixed(Won),
    Percent { percent: i64, max: Option<Won> },
}

impl Discount {
    /// `max_discount` is optional for a percent discount (no cap when absent) and refused
    /// for a fixed one, where it could only repeat or contradict `discount_value`.
    pub fn new(
        kind: DiscountType,
        value: i64,
        max_discount: Option<i64>,
    ) -> Result<Discount, DomainError> {
        match kind {
            DiscountType::Fixed => {
                if max_discount.is_some() {
                    return Err(DomainError::new(
                        "max_discount",
                        "applies only to percent discounts",
                    ));
                }
                if !(1..=MAX_WON).contains(&value) {
                    return Err(DomainError::new(
                        "discount_value",
                        format!("must be 1 to {MAX_WON} won"),
                    ));
                }
                Ok(Discount::Fixed(Won::new("discount_value", value)?))
            }
            DiscountType::Percent => {
                if !(1..=MAX_PERCENT).contains(&value) {
                    return Err(DomainError::new(
                        "discount_value",
                        format!("must be 1 to {MAX_PERCENT} percent"),
                    ));
                }
                let max = match max_discount {
                    Some(m) if m < 1 => {
                        return Err(DomainError::new(
                            "max_discount",
                            format!("must be 1 to {MAX_WON} won"),
                        ))
                    }
                    Some(m) => Some(Won::new("max_discount", m)?),
                    None => None,
                };
                Ok(Discount::Percent {
                    percent: value,
                    max,
                })
            }
        }
    }

    /// Won taken off `amount`: never more than `amount`, never negative.
    ///
    /// Rounding: a percent discount is `floor(amount × percent / 100)` — always rounded
    /// down, in the buyer's disfavour by less than one won, so the payable amount is an
    /// integer and the discount never exceeds the stated rate — then capped by
    /// `max_discount`. A fixed discount is its value, capped by `amount`.
    pub fn amount_off(self, amount: Won) -> Won {
        let off = match self {
            Discount::Fixed(value) => value.get(),
            Discount::Percent { percent, max } => {
                // amount ≤ MAX_WON (10^12) and percent ≤ 100: the product fits in i64.
                let raw = amount.get() * percent / 100;
                max.map_or(raw, |m| raw.min(m.get()))
            }
        };
        let off = off.min(amount.get());
        debug_assert!((0..=amount.get()).contains(&off), "discount out of range");
        // 0 ≤ off ≤ amount ≤ MAX_WON, so this cannot fail.
        Won::new("discount", off).unwrap_or(Won::ZERO)
    }
}

/// A campaign's discount and its minimum order amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponTerms {
    pub discount: Discount,
    pub min_order_amount: Option<Won>,
}

impl CouponTerms {
    /// The discount on an order of `amount`, or `Err(minimum)` when the order is below the
    /// campaign's `min_order_amount` (the coupon cannot be used on it at all).
    pub fn discount_for(self, amount: Won) -> Result<Won, Won> {
        match self.min_order_amount {
            Some(min) if amount < min => Err(min),
            _ => Ok(self.discount.amount_off(amount)),
        }
    }
}

/// `total_quantity`: 1..=MAX_COUPON_QUANTITY.
pub fn total_quantity(value: i64) -> Result<i64, DomainError> {
    if (1..=MAX_COUPON_QUANTITY).contains(&value) {
        Ok(value)
    } else {
        Err(DomainError::new(
            "total_quantity",
            format!("must be 1 to {MAX_COUPON_QUANTITY}"),
        ))
    }
}

/// `valid_days`: 1..=MAX_VALID_DAYS.
pub fn valid_days(value: i64) -> Result<i64, DomainError> {
    if (1..=MAX_VALID_DAYS).contains(&value) {
        Ok(value)
    } else {
        Err(DomainError::new(
            "valid_days",
            format!("must be 1 to {MAX_VALID_DAYS} days"),
        ))
    }
}

/// When coupons may be claimed: from `starts_at` (inclusive) until `ends_at` (exclusive),
/// or without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueWindow {
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
}

impl IssueWindow {
    /// The end must come after the start.
    pub fn new(starts_at: Timestamp, ends_at: Option<Timestamp>) -> Result<Self, DomainError> {
        if ends_at.is_some_and(|end| end <= starts_at) {
            return Err(DomainError::new(
                "issue_ends_at",
                "must be after issue_starts_at",
            ));
        }
        Ok(IssueWindow { starts_at, ends_at })
    }

    pub fn contains(self, now: Timestamp) -> bool {
        self.starts_at <= now && self.ends_at.is_none_or(|end| now < end)
    }
}

/// When a coupon issued at `issued_at` expires: `valid_days` after it, or else at the end
/// of the campaign's issue window, or never (`None`).
pub fn expires_at(
    issued_at: Timestamp,
    valid_days: Option<i64>,
    issue_ends_at: Option<Timestamp>,
) -> Option<Timestamp> {
    match valid_days {
        Some(days) => Some(Timestamp::from_millis(
            issued_at
                .millis()
                .saturating_add(days.saturating_mul(MILLIS_PER_DAY)),
        )),
        None => issue_ends_at,
    }
}

/// A user coupon's state. `issued`, `held` and `used` are stored; `expired` is derived
/// when read (an `issued` coupon whose `expires_at` has passed), so nothing has to sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    Issued,
    /// Held by an order awaiting payment.
    Held,
    Used,
    Expired,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Issued => "issued",
            CouponStatus::Held => "held",
            CouponStatus::Used => "used",
            CouponStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<CouponStatus> {
        match raw {
            "issued" => Some(CouponStatus::Issued),
            "held" => Some(CouponStatus::Held),
            "used" => Some(CouponStatus::Used),
            "expired" => Some(CouponStatus::Expired),
            _ => None,
        }
    }

    /// The state shown at `now`: an unused coupon past its expiry is `expired`.
    pub fn at(self, expires_at: Option<Timestamp>, now: Timestamp) -> CouponStatus {
        match (self, expires_at) {
            (CouponStatus::Issued, Some(expiry)) if expiry <= now => CouponStatus::Expired,
            (status, _) => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn won(v: i64) -> Won {
        Won::new("amount", v).unwrap()
    }

    proptest! {
        #[test]
        fn percent_discount_is_floored_capped_and_bounded(
            amount in 0..=MAX_WON,
            percent in 1..=MAX_PERCENT,
            cap in proptest::option::of(1..=MAX_WON),
        ) {
            let d = Discount::new(DiscountType::Percent, percent, cap).unwrap();
            let off = d.amount_off(won(amount)).get();
            let exact = i128::from(amount) * i128::from(percent);
            let floored = (exact / 100) as i64;
            prop_assert!(off <= amount);
            prop_assert!(off >= 0);
            prop_assert_eq!(off, floored.min(cap.unwrap_or(i64::MAX)));
            // Floor: never above the stated rate, and less than one won below it.
            prop_assert!(i128::from(off) * 100 <= exact);
            if cap.is_none_or(|c| floored <= c) {
                prop_assert!(exact < (i128::from(off) + 1) * 100);
            }
        }

        #[test]
        fn fixed_discount_never_exceeds_the_amount(amount in 0..=MAX_WON, value in 1..=MAX_WON) {
            let d = Discount::new(DiscountType::Fixed, value, None).unwrap();
            prop_assert_eq!(d.amount_off(won(amount)).get(), value.min(amount));
        }

        #[test]
        fn below_the_minimum_the_coupon_is_refused(
            amount in 0..=MAX_WON,
            min in 0..=MAX_WON,
            value in 1..=MAX_WON,
        ) {
            let terms = CouponTerms {
                discount: Discount::new(DiscountType::Fixed, value, None).unwrap(),
                min_order_amount: Some(won(min)),
            };
            let off = terms.discount_for(won(amount)).map(Won::get);
            if amount < min {
                prop_assert_eq!(off, Err(won(min)));
            } else {
                prop_assert_eq!(off, Ok(value.min(amount)));
            }
        }

        #[test]
        fn discount_values_are_accepted_exactly_in_range(value in any::<i64>(), cap in proptest::option::of(any::<i64>())) {
            let percent_ok = (1..=MAX_PERCENT).contains(&value)
                && cap.is_none_or(|c| (1..=MAX_WON).contains(&c));
            prop_assert_eq!(Discount::new(DiscountType::Percent, value, cap).is_ok(), percent_ok);
            let fixed_ok = (1..=MAX_WON).contains(&value) && cap.is_none();
            prop_assert_eq!(Discount::new(DiscountType::Fixed, value, cap).is_ok(), fixed_ok);
        }

        #[test]
        fn quantities_and_days_are_bounded(v in any::<i64>()) {
            prop_assert_eq!(total_quantity(v).is_ok(), (1..=MAX_COUPON_QUANTITY).contains(&v));
            prop_assert_eq!(valid_days(v).is_ok(), (1..=MAX_VALID_DAYS).contains(&v));
        }
    }

    #[test]
    fn percent_rounds_down() {
        let d = Discount::new(DiscountType::Percent, 15, None).unwrap();
        assert_eq!(d.amount_off(won(999)).get(), 149, "149.85 rounds down");
        let capped = Discount::new(DiscountType::Percent, 50, Some(3_000)).unwrap();
        assert_eq!(capped.amount_off(won(10_000)).get(), 3_000);
        assert_eq!(capped.amount_off(won(5_001)).get(), 2_500);
    }

    #[test]
    fn windows_are_half_open_and_ordered() {
        let (start, end) = (Timestamp::from_millis(1_000), Timestamp::from_millis(2_000));
        let w = IssueWindow::new(start, Some(end)).unwrap();
        assert!(!w.contains(Timestamp::from_millis(999)));
        assert!(w.contains(start));
        assert!(w.contains(Timestamp::from_millis(1_999)));
        assert!(!w.contains(end));
        assert!(IssueWindow::new(end, Some(start)).is_err());
        assert!(IssueWindow::new(start, Some(start)).is_err());
        assert!(IssueWindow::new(start, None)
            .unwrap()
            .contains(Timestamp::from_millis(i64::MAX)));
    }

    #[test]
    fn expiry_prefers_valid_days_then_the_campaign_end() {
        let issued = Timestamp::from_millis(10);
        let end = Timestamp::from_millis(5_000);
        assert_eq!(
            expires_at(issued, Some(2), Some(end)),
            Some(Timestamp::from_millis(10 + 2 * MILLIS_PER_DAY))
        );
        assert_eq!(expires_at(issued, None, Some(end)), Some(end));
        assert_eq!(expires_at(issued, None, None), None);
        let status = CouponStatus::Issued;
        assert_eq!(status.at(Some(end), end), CouponStatus::Expired);
        assert_eq!(
            status.at(Some(end), Timestamp::from_millis(4_999)),
            CouponStatus::Issued
        );
        assert_eq!(CouponStatus::Used.at(Some(end), end), CouponStatus::Used);
    }
}
