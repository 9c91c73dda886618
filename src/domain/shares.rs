//! How an order's coupon discount and points are shared among its partner orders, so that
//! cancelling one part refunds exactly that part's share (issue 10, partial cancellation).
//!
//! Each amount is split pro rata by weight with the largest remainder method (Hamilton's):
//! every part gets the floor of its exact quota, and the won left over go one each to the
//! parts with the largest fractional remainders, ties to the earliest part. The shares add
//! up to the amount exactly, and no share exceeds its weight while the amount does not
//! exceed the sum of the weights.
//!
//! The discount is split by subtotal; the points by what each subtotal has left after its
//! discount share (itself pro rata by subtotal up to a won of rounding). Splitting points
//! by the bare subtotal as well could give one part a won of discount and a won of points
//! out of a one-won subtotal; this way no part's payable goes below zero. The migration
//! that backfilled existing orders (`0009_partial_cancel.sql`) applies the same rule in SQL.

use super::values::Won;

/// `amount` split over `weights` by largest remainder: one share per weight, in the same
/// order, summing to `amount`. Requires `amount <= Σ weights` (then each share is at most
/// its weight); with all weights zero only a zero amount can be split (all zero).
///
/// Products are taken in `i128`, so any `Won` amounts and weights are exact.
pub fn split_pro_rata(amount: Won, weights: &[Won]) -> Vec<Won> {
    let total: i128 = weights.iter().map(|w| i128::from(w.get())).sum();
    let amount_wide = i128::from(amount.get());
    debug_assert!(amount_wide <= total, "cannot share more than the weights");
    if total == 0 || amount_wide == 0 {
        return vec![Won::ZERO; weights.len()];
    }
    let quotas: Vec<(i128, i128)> = weights
        .iter()
        .map(|w| {
            let exact = amount_wide * i128::from(w.get());
            (exact / total, exact % total)
        })
        .collect();
    let floors: i128 = quotas.iter().map(|(floor, _)| floor).sum();
    let leftover = usize::try_from(amount_wide - floors).unwrap_or(0);
    // Largest remainder first; among equal remainders the earlier part.
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| quotas[b].1.cmp(&quotas[a].1).then(a.cmp(&b)));
    let mut shares: Vec<i128> = quotas.iter().map(|(floor, _)| *floor).collect();
    for &i in order.iter().take(leftover) {
        shares[i] += 1;
    }
    shares
        .into_iter()
        .map(|s| Won::new("share", i64::try_from(s).unwrap_or(0)).unwrap_or(Won::ZERO))
        .collect()
}

/// One part's share of an order's benefits, and what remains for the buyer to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub discount: Won,
    pub points: Won,
    /// `subtotal - discount - points`, never below zero.
    pub payable: Won,
}

impl Share {
    /// No benefits: the whole subtotal is payable.
    pub fn whole(subtotal: Won) -> Share {
        Share {
            discount: Won::ZERO,
            points: Won::ZERO,
            payable: subtotal,
        }
    }
}

/// The shares of `discount` and `points` of parts with these `subtotals` (in part order).
/// Requires `discount + points <= Σ subtotals`, as placement guarantees.
pub fn share_benefits(subtotals: &[Won], discount: Won, points: Won) -> Vec<Share> {
    let discounts = split_pro_rata(discount, subtotals);
    let rests: Vec<Won> = subtotals
        .iter()
        .zip(&discounts)
        .map(|(s, d)| s.checked_sub(*d).unwrap_or(Won::ZERO))
        .collect();
    let points_shares = split_pro_rata(points, &rests);
    rests
        .iter()
        .zip(discounts.iter().zip(&points_shares))
        .map(|(rest, (d, p))| Share {
            discount: *d,
            points: *p,
            payable: rest.checked_sub(*p).unwrap_or(Won::ZERO),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn won(v: i64) -> Won {
        Won::new("w", v).unwrap()
    }

    fn raw(shares: &[Won]) -> Vec<i64> {
        shares.iter().map(|w| w.get()).collect()
    }

    #[test]
    fn leftover_won_go_to_the_largest_remainders_then_the_earliest_part() {
        // 100 over 100:100:100 → 33.33 each; the one won left goes to the first.
        assert_eq!(
            raw(&split_pro_rata(won(100), &[won(100), won(100), won(100)])),
            [34, 33, 33]
        );
        // 10 over 3000:2000:1000 → 5, 3.33, 1.67: the largest remainder (.67) wins.
        assert_eq!(
            raw(&split_pro_rata(won(10), &[won(3000), won(2000), won(1000)])),
            [5, 3, 2]
        );
        assert_eq!(raw(&split_pro_rata(won(0), &[won(5), won(7)])), [0, 0]);
        assert_eq!(raw(&split_pro_rata(won(0), &[won(0), won(0)])), [0, 0]);
        assert_eq!(raw(&split_pro_rata(won(12), &[won(0), won(12)])), [0, 12]);
    }

    #[test]
    fn points_are_split_over_what_the_discount_left() {
        // Subtotals 1 and 1, a discount of 1 and 1 point: splitting both by subtotal would
        // give the first part 1 + 1 off a subtotal of 1.
        let shares = share_benefits(&[won(1), won(1)], won(1), won(1));
        assert_eq!(
            shares
                .iter()
                .map(|s| (s.discount.get(), s.points.get(), s.payable.get()))
                .collect::<Vec<_>>(),
            [(1, 0, 0), (0, 1, 0)]
        );
    }

    #[test]
    fn the_largest_amounts_are_exact() {
        let max = won(crate::domain::values::MAX_WON);
        let shares = split_pro_rata(max, &[max, max, max]);
        assert_eq!(shares.iter().map(|w| w.get()).sum::<i64>(), max.get());
    }

    fn weights_and_amount() -> impl Strategy<Value = (Vec<i64>, i64)> {
        prop::collection::vec(0i64..=2_000_000_000, 1..8).prop_flat_map(|weights| {
            let sum: i64 = weights.iter().sum();
            (Just(weights), 0..=sum)
        })
    }

    proptest! {
        #[test]
        fn shares_add_up_and_never_exceed_their_weight((weights, amount) in weights_and_amount()) {
            let weights: Vec<Won> = weights.into_iter().map(won).collect();
            let shares = split_pro_rata(won(amount), &weights);
            prop_assert_eq!(shares.len(), weights.len());
            prop_assert_eq!(shares.iter().map(|s| s.get()).sum::<i64>(), amount);
            for (share, weight) in shares.iter().zip(&weights) {
                prop_assert!(share <= weight, "{:?} > {:?}", share, weight);
            }
        }

        #[test]
        fn shares_are_the_largest_remainder_rounding_of_the_quotas(
            (weights, amount) in weights_and_amount()
        ) {
            let total: i128 = weights.iter().map(|w| i128::from(*w)).sum();
            let wons: Vec<Won> = weights.iter().copied().map(won).collect();
            let shares = raw(&split_pro_rata(won(amount), &wons));
            let mut rounded_up = Vec::new();
            let mut rounded_down = Vec::new();
            for (i, (share, weight)) in shares.iter().zip(&weights).enumerate() {
                let exact = i128::from(amount) * i128::from(*weight);
                let floor = if total == 0 { 0 } else { exact / total };
                let remainder = if total == 0 { 0 } else { exact % total };
                let share = i128::from(*share);
                // Each share is its quota rounded down or up by one won.
                prop_assert!(share == floor || share == floor + 1);
                if share == floor + 1 { rounded_up.push((remainder, i)) } else { rounded_down.push((remainder, i)) }
            }
            // Everything rounded up beats everything rounded down: a larger remainder, or
            // the same one earlier.
            for (up_rem, up_i) in &rounded_up {
                for (down_rem, down_i) in &rounded_down {
                    prop_assert!(up_rem > down_rem || (up_rem == down_rem && up_i < down_i));
                }
            }
        }

        #[test]
        fn a_part_never_pays_below_zero_and_the_parts_pay_the_order(
            subtotals in prop::collection::vec(0i64..=1_000_000_000, 1..6),
            discount_pct in 0i64..=100, points_pct in 0i64..=100,
        ) {
            let total: i64 = subtotals.iter().sum();
            let discount = total * discount_pct / 100;
            let points = (total - discount) * points_pct / 100;
            let wons: Vec<Won> = subtotals.iter().copied().map(won).collect();
            let shares = share_benefits(&wons, won(discount), won(points));
            prop_assert_eq!(shares.iter().map(|s| s.discount.get()).sum::<i64>(), discount);
            prop_assert_eq!(shares.iter().map(|s| s.points.get()).sum::<i64>(), points);
            prop_assert_eq!(shares.iter().map(|s| s.payable.get()).sum::<i64>(), total - discount - points);
            for (share, subtotal) in shares.iter().zip(&subtotals) {
                prop_assert_eq!(share.discount.get() + share.points.get() + share.payable.get(), *subtotal);
            }
        }
    }
}
