//! Pure analysis of a [`Recording`]: counts, latency percentiles, time buckets and the
//! latency histogram. Latency covers every attempt that got an HTTP answer (success or
//! rejection); attempts without an answer are counted as errors instead.

use crate::outcome::Outcome;
use crate::runner::Recording;
use std::collections::BTreeMap;

/// Counts of outcomes over the whole run.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub attempts: u64,
    pub ok: u64,
    pub rejected: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Attempts without an HTTP answer, dropped ones included.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    pub dropped: u64,
}

impl Tally {
    pub fn responses(&self) -> u64 {
        self.ok + self.rejected
    }

    pub fn rejected_with(&self, code: &str) -> u64 {
        self.rejected_by_code.get(code).copied().unwrap_or(0)
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: u32,
    pub mean: f64,
    pub p50: u32,
    pub p90: u32,
    pub p95: u32,
    pub p99: u32,
    pub p999: u32,
    pub max: u32,
}

/// One time bucket of finished attempts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Bucket {
    pub ok: u32,
    pub rejected: u32,
    pub errors: u32,
    pub p50_us: u32,
    pub p99_us: u32,
}

/// Counts per logarithmic latency bin: bin `k` covers
/// `[10^(lo_exp + k/per_decade), 10^(lo_exp + (k+1)/per_decade))` microseconds.
#[derive(Debug, Default, PartialEq)]
pub struct Histogram {
    pub lo_exp: i32,
    pub per_decade: u32,
    pub counts: Vec<u64>,
}

#[derive(Debug)]
pub struct Analysis {
    pub tally: Tally,
    pub latency: Latency,
    pub histogram: Histogram,
    pub bucket_ms: u32,
    pub buckets: Vec<Bucket>,
    pub duration_s: f64,
    /// HTTP answers per second over the whole run.
    pub throughput_per_s: f64,
}

pub fn analyse(rec: &Recording) -> Analysis {
    let tally = tally(rec);
    let mut answered: Vec<u32> = answered(rec).map(|(_, us)| us).collect();
    answered.sort_unstable();
    let bucket_ms = bucket_width_ms(rec.duration.as_millis() as u64);
    let duration_s = rec.duration.as_secs_f64();
    let throughput_per_s = if duration_s > 0.0 {
        tally.responses() as f64 / duration_s
    } else {
        0.0
    };
    Analysis {
        latency: latency(&answered),
        histogram: log_histogram(&answered),
        buckets: buckets(rec, bucket_ms),
        bucket_ms,
        duration_s,
        throughput_per_s,
        tally,
    }
}

pub fn tally(rec: &Recording) -> Tally {
    let mut t = Tally {
        attempts: rec.outcomes.len() as u64,
        ..Tally::default()
    };
    let mut by_code = vec![0u64; rec.codes.len()];
    for outcome in &rec.outcomes {
        match *outcome {
            Outcome::Pending => {}
            Outcome::Ok => t.ok += 1,
            Outcome::Rejected(code) => {
                t.rejected += 1;
                if let Some(count) = by_code.get_mut(code as usize) {
                    *count += 1;
                }
            }
            Outcome::Failed(kind) => {
                t.errors += 1;
                *t.errors_by_kind.entry(kind.as_str()).or_default() += 1;
            }
        }
    }
    t.dropped = t.errors_by_kind.get("dropped").copied().unwrap_or(0);
    t.rejected_by_code = rec
        .codes
        .iter()
        .zip(by_code)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.clone(), n))
        .collect();
    t
}

/// (finish time, latency) of every attempt that got an HTTP answer.
fn answered(rec: &Recording) -> impl Iterator<Item = (u32, u32)> + '_ {
    rec.outcomes
        .iter()
        .zip(rec.finish_ms.iter().zip(&rec.latency_us))
        .filter(|(o, _)| matches!(o, Outcome::Ok | Outcome::Rejected(_)))
        .map(|(_, (&finish, &us))| (finish, us))
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `p`% of
/// the samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn latency(sorted: &[u32]) -> Latency {
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return Latency::default();
    };
    let sum: u64 = sorted.iter().map(|&v| u64::from(v)).sum();
    Latency {
        count: sorted.len() as u64,
        min,
        mean: sum as f64 / sorted.len() as f64,
        p50: percentile(sorted, 50.0),
        p90: percentile(sorted, 90.0),
        p95: percentile(sorted, 95.0),
        p99: percentile(sorted, 99.0),
        p999: percentile(sorted, 99.9),
        max,
    }
}

/// 10 ms buckets for runs up to 2 s (a drop on loopback is over in a fraction of a
/// second), 100 ms up to 30 s, 1 s up to 10 min, then 10 s: never more than about 600 bars.
pub fn bucket_width_ms(duration_ms: u64) -> u32 {
    match duration_ms {
        0..=2_000 => 10,
        2_001..=30_000 => 100,
        30_001..=600_000 => 1_000,
        _ => 10_000,
    }
}

pub fn buckets(rec: &Recording, width_ms: u32) -> Vec<Bucket> {
    let last = rec
        .outcomes
        .iter()
        .zip(&rec.finish_ms)
        .filter(|(o, _)| **o != Outcome::Pending)
        .map(|(_, &f)| f)
        .max();
    let Some(last) = last else { return Vec::new() };
    let index = |finish_ms: u32| (finish_ms / width_ms) as usize;
    let mut out = vec![Bucket::default(); index(last) + 1];
    let mut samples: Vec<Vec<u32>> = vec![Vec::new(); out.len()];
    for ((outcome, &finish), &us) in rec.outcomes.iter().zip(&rec.finish_ms).zip(&rec.latency_us) {
        let i = index(finish);
        match outcome {
            Outcome::Pending => {}
            Outcome::Ok => out[i].ok += 1,
            Outcome::Rejected(_) => out[i].rejected += 1,
            Outcome::Failed(_) => out[i].errors += 1,
        }
        if matches!(outcome, Outcome::Ok | Outcome::Rejected(_)) {
            samples[i].push(us);
        }
    }
    for (bucket, mut s) in out.iter_mut().zip(samples) {
        s.sort_unstable();
        bucket.p50_us = percentile(&s, 50.0);
        bucket.p99_us = percentile(&s, 99.0);
    }
    out
}

/// Ten bins per decade, from the decade of the fastest answer to that of the slowest.
pub fn log_histogram(sorted: &[u32]) -> Histogram {
    const PER_DECADE: u32 = 10;
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return Histogram {
            lo_exp: 0,
            per_decade: PER_DECADE,
            counts: Vec::new(),
        };
    };
    let exp = |us: u32| f64::from(us.max(1)).log10();
    let lo_exp = exp(min).floor() as i32;
    let hi_exp = exp(max).floor() as i32 + 1;
    let bins = ((hi_exp - lo_exp) as u32 * PER_DECADE) as usize;
    let mut counts = vec![0u64; bins];
    for &us in sorted {
        let k = ((exp(us) - f64::from(lo_exp)) * f64::from(PER_DECADE))
            .floor()
            .max(0.0) as usize;
        counts[k.min(bins - 1)] += 1;
    }
    Histogram {
        lo_exp,
        per_decade: PER_DECADE,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorKind;
    use std::time::Duration;

    fn recording(rows: &[(Outcome, u32, u32)]) -> Recording {
        Recording {
            outcomes: rows.iter().map(|r| r.0).collect(),
            latency_us: rows.iter().map(|r| r.1).collect(),
            finish_ms: rows.iter().map(|r| r.2).collect(),
            codes: vec!["out_of_stock".into(), "overloaded".into()],
            duration: Duration::from_millis(250),
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 95.0), 95);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
    }

    #[test]
    fn latency_summarises_sorted_samples() {
        let l = latency(&[100, 200, 300, 400]);
        assert_eq!(
            (l.count, l.min, l.max, l.p50, l.p99),
            (4, 100, 400, 200, 400)
        );
        assert_eq!(l.mean, 250.0);
        assert_eq!(latency(&[]), Latency::default());
    }

    #[test]
    fn tally_counts_codes_and_error_kinds() {
        let rec = recording(&[
            (Outcome::Ok, 10, 0),
            (Outcome::Rejected(0), 10, 0),
            (Outcome::Rejected(0), 10, 0),
            (Outcome::Rejected(1), 10, 0),
            (Outcome::Failed(ErrorKind::Dropped), 0, 0),
            (Outcome::Failed(ErrorKind::Timeout), 0, 0),
        ]);
        let t = tally(&rec);
        assert_eq!(
            (t.attempts, t.ok, t.rejected, t.errors, t.dropped),
            (6, 1, 3, 2, 1)
        );
        assert_eq!(t.rejected_with("out_of_stock"), 2);
        assert_eq!(t.rejected_with("overloaded"), 1);
        assert_eq!(t.errors_by_kind.get("timeout"), Some(&1));
        assert_eq!(t.responses(), 4);
    }

    #[test]
    fn buckets_split_by_finish_time_and_outcome() {
        let rec = recording(&[
            (Outcome::Ok, 1_000, 5),
            (Outcome::Rejected(0), 3_000, 99),
            (Outcome::Failed(ErrorKind::Timeout), 9_999_999, 150),
            (Outcome::Ok, 2_000, 230),
        ]);
        let b = buckets(&rec, 100);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].ok, b[0].rejected, b[0].errors), (1, 1, 0));
        assert_eq!((b[0].p50_us, b[0].p99_us), (1_000, 3_000));
        assert_eq!(
            (b[1].ok, b[1].rejected, b[1].errors, b[1].p99_us),
            (0, 0, 1, 0)
        );
        assert_eq!((b[2].ok, b[2].p50_us), (1, 2_000));
    }

    #[test]
    fn bucket_width_follows_duration() {
        assert_eq!(bucket_width_ms(300), 10);
        assert_eq!(bucket_width_ms(2_500), 100);
        assert_eq!(bucket_width_ms(120_000), 1_000);
        assert_eq!(bucket_width_ms(3_600_000), 10_000);
    }

    #[test]
    fn histogram_bins_are_logarithmic_and_hold_every_sample() {
        let samples = [150, 900, 1_000, 1_200, 45_000];
        let h = log_histogram(&samples);
        assert_eq!((h.lo_exp, h.per_decade, h.counts.len()), (2, 10, 30));
        assert_eq!(h.counts.iter().sum::<u64>(), 5);
        assert_eq!(h.counts[1], 1, "150 µs lies in [10^2.1, 10^2.2)");
        assert_eq!(h.counts[10], 2, "1000 and 1200 µs lie in [10^3, 10^3.1)");
        assert_eq!(h.counts[26], 1, "45 ms lies in [10^4.6, 10^4.7)");
    }

    #[test]
    fn analysis_ignores_errors_in_latency() {
        let rec = recording(&[
            (Outcome::Ok, 500, 10),
            (Outcome::Failed(ErrorKind::Timeout), 30_000_000, 20),
        ]);
        let a = analyse(&rec);
        assert_eq!(a.latency.max, 500);
        assert_eq!(a.throughput_per_s, 4.0);
    }
}
