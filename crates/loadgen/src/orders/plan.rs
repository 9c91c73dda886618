//! The arithmetic of an order load test, pure so it is tested on its own: how many attempts
//! and coupons a run needs, which buyer, coupon and product attempt n uses, the figures
//! set beside seed 002's, and the check of the orders read back.

use crate::api::OrderRow;
use crate::stats::Analysis;
use crate::summary::{mean_ms, ms};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Most coupons (campaigns) per buyer: one claim each, all made before the run.
pub const MAX_PER_BUYER: u64 = 1_000;

/// Seed 002's order load test (1,000 users for 10 minutes, each order with a coupon and
/// points): what its improved system reported.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Seed {
    pub orders: u64,
    pub duration_s: f64,
    pub orders_per_s: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub error_rate: f64,
}

pub const SEED_002: Seed = Seed {
    orders: 45_000,
    duration_s: 600.0,
    orders_per_s: 75.0,
    mean_ms: 380.0,
    p95_ms: 800.0,
    error_rate: 0.015,
};

/// How large a run is.
#[derive(Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Attempts the runner may make: all of them in an open loop, at most in a closed one.
    pub attempts: u64,
    /// Coupons each buyer holds, so orders each buyer may place.
    pub per_buyer: u64,
}

/// An open loop makes `rate × duration` attempts; a closed loop makes as many as its users
/// manage before the deadline, at most `duration ÷ think + 1` each. Every attempt needs a
/// coupon of its own, so buyers hold `attempts ÷ buyers` coupons (rounded up) unless told
/// how many; a closed loop without a think time has no bound to derive that from.
pub fn size(
    rate: Option<f64>,
    concurrency: u32,
    duration: Duration,
    think: Duration,
    buyers: u64,
    per_buyer: Option<u64>,
) -> Result<Sizing, String> {
    if buyers == 0 {
        return Err("no buyers".into());
    }
    let needed =
        match (rate, per_buyer) {
            (Some(rate), _) => (rate * duration.as_secs_f64()).ceil().max(1.0) as u64,
            (None, Some(k)) => buyers.saturating_mul(k),
            (None, None) if think.is_zero() => return Err(
                "a closed loop without --think has no bound on its orders: give --orders-per-buyer"
                    .into(),
            ),
            (None, None) => {
                let per_user = (duration.as_secs_f64() / think.as_secs_f64()).floor() as u64 + 1;
                u64::from(concurrency).saturating_mul(per_user)
            }
        };
    let per_buyer = per_buyer.unwrap_or_else(|| needed.div_ceil(buyers));
    if per_buyer > MAX_PER_BUYER {
        return Err(format!(
            "{per_buyer} coupons per buyer needed, at most {MAX_PER_BUYER}: give more buyers"
        ));
    }
    if buyers.saturating_mul(per_buyer) < needed {
        return Err(format!(
            "{needed} orders need {needed} coupons; {buyers} buyers × {per_buyer} hold fewer"
        ));
    }
    let attempts = if rate.is_some() {
        needed
    } else {
        buyers * per_buyer
    };
    Ok(Sizing {
        attempts,
        per_buyer,
    })
}

/// Units of each product: enough that none runs out, since attempt n orders one unit of
/// product n mod products.
pub fn stock_per_product(attempts: u64, products: u32) -> i64 {
    i64::try_from(attempts.div_ceil(u64::from(products.max(1)))).unwrap_or(i64::MAX)
}

/// Who attempt n is and what it orders.
#[derive(Debug, PartialEq, Eq)]
pub struct Slot {
    pub buyer: usize,
    /// Index into the buyer-major coupon list: buyer b's k-th coupon.
    pub coupon: usize,
    pub product: usize,
}

/// Buyers take turns (buyer n mod B), so each buyer's k-th order is attempt k·B + b and
/// uses the buyer's k-th coupon: no coupon serves two attempts.
pub fn slot(n: u64, buyers: usize, per_buyer: u64, products: usize) -> Slot {
    let b = (n % buyers as u64) as usize;
    let k = n / buyers as u64;
    debug_assert!(k < per_buyer, "attempts stay within buyers × coupons each");
    Slot {
        buyer: b,
        coupon: b * per_buyer as usize + k as usize,
        product: (n % products as u64) as usize,
    }
}

/// The run's figures in the seed's terms.
#[derive(Serialize, Debug, PartialEq)]
pub struct Figures {
    pub attempts: u64,
    pub placed: u64,
    pub duration_s: f64,
    pub orders_per_s: f64,
    /// Attempts that did not end in an order (refused, unanswered, dropped) ÷ attempts.
    pub error_rate: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

pub fn figures(a: &Analysis) -> Figures {
    let t = &a.tally;
    let l = &a.latency;
    let per_s = |n: u64| {
        if a.duration_s > 0.0 {
            n as f64 / a.duration_s
        } else {
            0.0
        }
    };
    Figures {
        attempts: t.attempts,
        placed: t.ok,
        duration_s: a.duration_s,
        orders_per_s: per_s(t.ok),
        error_rate: if t.attempts > 0 {
            (t.attempts - t.ok) as f64 / t.attempts as f64
        } else {
            0.0
        },
        mean_ms: mean_ms(l.mean),
        p50_ms: ms(l.p50),
        p95_ms: ms(l.p95),
        p99_ms: ms(l.p99),
    }
}

/// The run beside seed 002, one row per figure, for the terminal.
pub fn beside_seed(f: &Figures, seed: &Seed) -> String {
    let rows = [
        (
            "orders placed",
            format!("{} in {:.1} s", f.placed, f.duration_s),
            format!("{} in {:.0} s", seed.orders, seed.duration_s),
        ),
        (
            "orders/s",
            format!("{:.1}", f.orders_per_s),
            format!("{:.1}", seed.orders_per_s),
        ),
        (
            "mean",
            format!("{:.1} ms", f.mean_ms),
            format!("{:.0} ms", seed.mean_ms),
        ),
        ("p50", format!("{:.1} ms", f.p50_ms), "-".into()),
        (
            "p95",
            format!("{:.1} ms", f.p95_ms),
            format!("{:.0} ms", seed.p95_ms),
        ),
        ("p99", format!("{:.1} ms", f.p99_ms), "-".into()),
        (
            "errors",
            format!("{:.2}%", f.error_rate * 100.0),
            format!("{:.1}%", seed.error_rate * 100.0),
        ),
    ];
    let mut out = format!("{:<14} {:>22} {:>18}\n", "", "this run", "seed 002");
    for (name, ours, theirs) in rows {
        out.push_str(&format!("{name:<14} {ours:>22} {theirs:>18}\n"));
    }
    out
}

/// What the orders read back say about the run.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct OrdersCheck {
    /// Orders of this run in the listing (those naming one of its coupons).
    pub listed: u64,
    /// Acknowledged orders listed with the buyer's own coupon and the points asked for.
    pub with_coupon_and_points: u64,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Every acknowledged order must be listed, name a coupon of this run owned by its buyer,
/// and use `points`; no coupon serves two orders; an order the client was never told about
/// is a fault unless some attempt went unanswered (it may be that attempt's).
pub fn check_orders(
    rows: &[OrderRow],
    acknowledged: &[i64],
    owner_of: &HashMap<i64, i64>,
    points: i64,
    unanswered: u64,
) -> OrdersCheck {
    let mut c = OrdersCheck::default();
    let run_rows: HashMap<i64, &OrderRow> = rows
        .iter()
        .filter(|o| o.coupon_id.is_some_and(|id| owner_of.contains_key(&id)))
        .map(|o| (o.id, o))
        .collect();
    c.listed = run_rows.len() as u64;
    let mut bad = Vec::new();
    for id in acknowledged {
        let Some(order) = rows.iter().find(|o| o.id == *id) else {
            bad.push(format!("order {id} was acknowledged but is not listed"));
            continue;
        };
        match order
            .coupon_id
            .and_then(|cid| owner_of.get(&cid).map(|u| (cid, *u)))
        {
            None => bad.push(format!("order {id} names no coupon of this run")),
            Some((cid, owner)) if owner != order.user_id => bad.push(format!(
                "order {id} of user {} used coupon {cid} of user {owner}",
                order.user_id
            )),
            Some(_) if order.points_used != points => bad.push(format!(
                "order {id} used {} points, not {points}",
                order.points_used
            )),
            Some(_) => c.with_coupon_and_points += 1,
        }
    }
    let mut seen = HashSet::new();
    let twice = run_rows
        .values()
        .filter_map(|o| o.coupon_id)
        .filter(|cid| !seen.insert(*cid))
        .count();
    if twice > 0 {
        bad.push(format!("{twice} coupon(s) served two orders"));
    }
    let acked: HashSet<i64> = acknowledged.iter().copied().collect();
    let unknown = run_rows.keys().filter(|id| !acked.contains(id)).count();
    if unknown > 0 {
        let line = format!("{unknown} order(s) of this run were never acknowledged");
        if unanswered == 0 {
            bad.push(line);
        } else {
            c.notes
                .push(format!("{line} ({unanswered} attempt(s) got no answer)"));
        }
    }
    // A long list says the same thing many times; the first few and a count say it once.
    let shown = bad.len().min(10);
    c.problems.extend(bad.iter().take(shown).cloned());
    if bad.len() > shown {
        c.problems.push(format!("… and {} more", bad.len() - shown));
    }
    c
}

/// `10m`, `30s`, `1500ms`, `1h`: a whole number and a unit.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let digits = raw.trim_end_matches(|ch: char| ch.is_ascii_alphabetic());
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?}: expected a number and a unit (ms, s, m, h)"))?;
    let duration = match &raw[digits.len()..] {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3_600)),
        _ => return Err(format!("{raw:?}: the unit is one of ms, s, m, h")),
    };
    if duration > Duration::from_secs(24 * 3_600) {
        return Err(format!("{raw:?}: at most 24h"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrderStatus;
    use crate::outcome::{ErrorKind, Outcome};
    use crate::runner::Recording;
    use crate::stats::analyse;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn durations_have_a_unit() {
        assert_eq!(parse_duration("10m"), Ok(600 * SECOND));
        assert_eq!(parse_duration("30s"), Ok(30 * SECOND));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("1h"), Ok(3_600 * SECOND));
        for bad in ["10", "m", "1.5s", "-1s", "10d", "25h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_seeds_test_is_sized_at_its_rate_and_length() {
        // 75 orders/s for 10 minutes from 1,000 buyers: 45,000 orders, 45 coupons each.
        let seed = size(Some(75.0), 1_000, 600 * SECOND, Duration::ZERO, 1_000, None);
        assert_eq!(
            seed,
            Ok(Sizing {
                attempts: 45_000,
                per_buyer: 45
            })
        );
        // 1,000 users thinking 13 s between orders for 10 minutes: at most 47 each.
        let closed = size(None, 1_000, 600 * SECOND, 13 * SECOND, 1_000, None).unwrap();
        assert_eq!(closed.per_buyer, 47);
        assert_eq!(closed.attempts, 47_000);
        // Told how many: a closed loop may make exactly that many.
        let told = size(None, 10, 2 * SECOND, Duration::ZERO, 4, Some(3)).unwrap();
        assert_eq!(told.attempts, 12);
        // Rounded up: 7.5 attempts → 8, over 3 buyers → 3 coupons each.
        let odd = size(Some(2.5), 5, 3 * SECOND, Duration::ZERO, 3, None).unwrap();
        assert_eq!((odd.attempts, odd.per_buyer), (8, 3));
    }

    #[test]
    fn a_run_without_enough_coupons_is_refused() {
        assert!(size(None, 10, SECOND, Duration::ZERO, 5, None).is_err());
        assert!(size(Some(100.0), 10, 10 * SECOND, Duration::ZERO, 10, Some(5)).is_err());
        assert!(size(Some(100_000.0), 10, 60 * SECOND, Duration::ZERO, 10, None).is_err());
        assert!(size(Some(1.0), 1, SECOND, Duration::ZERO, 0, None).is_err());
    }

    #[test]
    fn attempts_take_turns_and_never_share_a_coupon() {
        let (buyers, per_buyer, products) = (3, 4, 5);
        let slots: Vec<Slot> = (0..12)
            .map(|n| slot(n, buyers, per_buyer, products))
            .collect();
        assert_eq!(
            slots[4],
            Slot {
                buyer: 1,
                coupon: 5,
                product: 4
            }
        );
        let coupons: HashSet<usize> = slots.iter().map(|s| s.coupon).collect();
        assert_eq!(coupons.len(), 12, "every attempt its own coupon");
        for s in &slots {
            assert_eq!(
                s.coupon / per_buyer as usize,
                s.buyer,
                "the buyer's own coupon"
            );
        }
        // One unit of product n mod P per attempt: 12 attempts over 5 products, 3 at most.
        assert_eq!(stock_per_product(12, 5), 3);
        assert_eq!(stock_per_product(10, 5), 2);
    }

    fn recording() -> Recording {
        Recording {
            outcomes: vec![
                Outcome::Ok,
                Outcome::Ok,
                Outcome::Ok,
                Outcome::Rejected(0),
                Outcome::Failed(ErrorKind::Timeout),
            ],
            latency_us: vec![100_000, 200_000, 600_000, 300_000, 0],
            finish_ms: vec![10, 20, 30, 40, 50],
            codes: vec!["insufficient_points".into()],
            duration: 2 * SECOND,
        }
    }

    #[test]
    fn figures_count_every_attempt_that_placed_nothing_as_an_error() {
        let f = figures(&analyse(&recording()));
        assert_eq!((f.attempts, f.placed), (5, 3));
        assert_eq!(f.orders_per_s, 1.5);
        assert_eq!(f.error_rate, 0.4);
        // The mean and percentiles cover the four answers, the refusal included.
        assert_eq!(f.mean_ms, 300.0);
        assert_eq!((f.p50_ms, f.p95_ms), (200.0, 600.0));
    }

    #[test]
    fn the_run_is_printed_beside_the_seed() {
        let f = figures(&analyse(&recording()));
        let table = beside_seed(&f, &SEED_002);
        assert!(table.contains("45000 in 600 s"), "{table}");
        let mean = table.lines().find(|l| l.starts_with("mean")).unwrap();
        assert!(
            mean.contains("300.0 ms") && mean.contains("380 ms"),
            "{mean}"
        );
        let errors = table.lines().find(|l| l.starts_with("errors")).unwrap();
        assert!(
            errors.contains("40.00%") && errors.contains("1.5%"),
            "{errors}"
        );
    }

    fn row(id: i64, user_id: i64, coupon_id: Option<i64>, points_used: i64) -> OrderRow {
        OrderRow {
            id,
            user_id,
            status: OrderStatus::PendingPayment,
            partner_orders: Vec::new(),
            coupon_id,
            points_used,
        }
    }

    #[test]
    fn acknowledged_orders_must_use_their_buyers_coupon_and_the_points() {
        let owners: HashMap<i64, i64> = [(100, 1), (101, 1), (200, 2)].into();
        let good = [row(1, 1, Some(100), 500), row(2, 2, Some(200), 500)];
        let c = check_orders(&good, &[1, 2], &owners, 500, 0);
        assert_eq!((c.listed, c.with_coupon_and_points), (2, 2));
        assert!(c.problems.is_empty(), "{c:?}");

        let bad = [
            row(1, 1, Some(100), 400),
            row(2, 2, Some(101), 500),
            row(3, 2, None, 500),
            row(4, 1, Some(100), 500),
        ];
        let c = check_orders(&bad, &[1, 2, 3, 4, 5], &owners, 500, 0);
        assert_eq!(c.with_coupon_and_points, 1);
        let all = c.problems.join("\n");
        for expected in [
            "order 1 used 400 points",
            "order 2 of user 2 used coupon 101 of user 1",
            "order 3 names no coupon",
            "order 5 was acknowledged but is not listed",
            "1 coupon(s) served two orders",
        ] {
            assert!(all.contains(expected), "{expected} missing from {all}");
        }
    }

    #[test]
    fn an_unacknowledged_order_is_a_fault_only_when_every_attempt_was_answered() {
        let owners: HashMap<i64, i64> = [(100, 1), (101, 1)].into();
        let rows = [row(1, 1, Some(100), 5), row(2, 1, Some(101), 5)];
        let strict = check_orders(&rows, &[1], &owners, 5, 0);
        assert_eq!(strict.problems.len(), 1, "{strict:?}");
        let lenient = check_orders(&rows, &[1], &owners, 5, 1);
        assert!(lenient.problems.is_empty() && lenient.notes.len() == 1);
        // Orders of other runs (coupons not ours) are not counted.
        let other = [row(9, 3, Some(999), 5), row(1, 1, Some(100), 5)];
        assert_eq!(check_orders(&other, &[1], &owners, 5, 0).listed, 1);
    }
}
