//! `summary.json`: the figures of a run in one shape for every scenario, with the
//! scenario's own facts (`sold`, `oversold`… or `ok`) flattened in.

use crate::stats::Analysis;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a run was set up.
#[derive(Serialize, Debug, Clone)]
pub struct RunInfo {
    pub scenario: &'static str,
    pub started_at: String,
    pub targets: Vec<String>,
    pub concurrency: u32,
    /// Open loop: attempts launched per second; `null` for a closed loop.
    pub rate_per_s: Option<f64>,
    pub timeout_secs: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LatencyMs {
    /// Arithmetic mean of the answered attempts: the seeds quote means (seed 002's 380 ms
    /// order mean, 45 ms coupon mean), and a mean cannot be rebuilt from percentiles.
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct LatencyDetailMs {
    /// Attempts with an HTTP answer, which are what the latency figures cover.
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p90: f64,
    pub p999: f64,
}

#[derive(Serialize)]
pub struct Summary<'a, X: Serialize> {
    #[serde(flatten)]
    pub run: &'a RunInfo,
    pub attempts: u64,
    #[serde(flatten)]
    pub facts: X,
    pub rejected_by_code: &'a BTreeMap<String, u64>,
    /// Attempts without an HTTP answer: timeouts, connection errors, dropped (open loop).
    pub errors: u64,
    pub dropped: u64,
    pub errors_by_kind: &'a BTreeMap<&'static str, u64>,
    pub duration_s: f64,
    /// HTTP answers per second.
    pub throughput_per_s: f64,
    pub latency_ms: LatencyMs,
    pub latency_detail_ms: LatencyDetailMs,
    /// Width of the time buckets in report.html.
    pub bucket_ms: u32,
}

pub fn summary<'a, X: Serialize>(run: &'a RunInfo, a: &'a Analysis, facts: X) -> Summary<'a, X> {
    let l = &a.latency;
    Summary {
        run,
        attempts: a.tally.attempts,
        facts,
        rejected_by_code: &a.tally.rejected_by_code,
        errors: a.tally.errors,
        dropped: a.tally.dropped,
        errors_by_kind: &a.tally.errors_by_kind,
        duration_s: round3(a.duration_s),
        throughput_per_s: round3(a.throughput_per_s),
        latency_ms: LatencyMs {
            mean: mean_ms(l.mean),
            p50: ms(l.p50),
            p95: ms(l.p95),
            p99: ms(l.p99),
            max: ms(l.max),
        },
        latency_detail_ms: LatencyDetailMs {
            count: l.count,
            min: ms(l.min),
            mean: mean_ms(l.mean),
            p90: ms(l.p90),
            p999: ms(l.p999),
        },
        bucket_ms: a.bucket_ms,
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes `summary.json` and `report.html` into `dir`, creating it.
pub fn write_outputs(
    dir: &Path,
    summary: &impl Serialize,
    html: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join("summary.json");
    let mut json = serde_json::to_vec_pretty(summary)?;
    json.push(b'\n');
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html).with_context(|| format!("writing {}", html_path.display()))?;
    Ok((json_path, html_path))
}

/// The one line printed when a run ends, whether or not stderr is a terminal.
pub fn final_line(run: &RunInfo, ok_label: &str, a: &Analysis) -> String {
    let t = &a.tally;
    let l = &a.latency;
    format!(
        "{}: {} attempts in {:.2}s, {:.0} answers/s; {ok_label} {}, rejected {}, errors {}; latency mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        run.scenario,
        t.attempts,
        a.duration_s,
        a.throughput_per_s,
        t.ok,
        t.rejected,
        t.errors,
        mean_ms(l.mean),
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        ms(l.max)
    )
}

pub fn ms(us: u32) -> f64 {
    round3(f64::from(us) / 1000.0)
}

/// A mean in microseconds, in milliseconds to the microsecond.
pub fn mean_ms(us: f64) -> f64 {
    round3(us / 1000.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorKind, Outcome};
    use crate::runner::Recording;
    use crate::stats::analyse;
    use std::time::Duration;

    #[derive(Serialize)]
    struct Facts {
        sold: u64,
        oversold: i64,
    }

    #[test]
    fn summary_json_has_the_contract_fields() {
        let rec = Recording {
            outcomes: vec![
                Outcome::Ok,
                Outcome::Rejected(0),
                Outcome::Failed(ErrorKind::Dropped),
            ],
            latency_us: vec![1_500, 2_500, 0],
            finish_ms: vec![10, 20, 30],
            codes: vec!["out_of_stock".into()],
            duration: Duration::from_millis(500),
        };
        let analysis = analyse(&rec);
        let run = RunInfo {
            scenario: "drop",
            started_at: "2025-01-01T00:00:00Z".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            concurrency: 2,
            rate_per_s: None,
            timeout_secs: 30,
        };
        let json = serde_json::to_value(summary(
            &run,
            &analysis,
            Facts {
                sold: 1,
                oversold: 0,
            },
        ))
        .unwrap();
        for key in [
            "attempts",
            "sold",
            "oversold",
            "rejected_by_code",
            "errors",
            "duration_s",
            "throughput_per_s",
            "latency_ms",
            "scenario",
            "targets",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(json["attempts"], 3);
        assert_eq!(json["rejected_by_code"]["out_of_stock"], 1);
        assert_eq!(json["errors"], 1);
        assert_eq!(json["dropped"], 1);
        assert_eq!(json["throughput_per_s"], 4.0);
        let mut latency: Vec<&String> = json["latency_ms"].as_object().unwrap().keys().collect();
        latency.sort();
        assert_eq!(latency, ["max", "mean", "p50", "p95", "p99"]);
        assert_eq!(json["latency_ms"]["p50"], 1.5);
        // The mean covers the two answered attempts, not the dropped one.
        assert_eq!(json["latency_ms"]["mean"], 2.0);
        assert_eq!(json["latency_ms"]["max"], 2.5);
    }

    #[test]
    fn milliseconds_keep_microsecond_precision() {
        assert_eq!(ms(1_234), 1.234);
        assert_eq!(ms(0), 0.0);
        assert_eq!(mean_ms(1_234.567_8), 1.235);
    }

    #[test]
    fn the_printed_line_has_the_mean_beside_the_percentiles() {
        let rec = Recording {
            outcomes: vec![Outcome::Ok, Outcome::Ok, Outcome::Ok],
            latency_us: vec![1_000, 2_000, 6_000],
            finish_ms: vec![10, 20, 30],
            codes: Vec::new(),
            duration: Duration::from_secs(1),
        };
        let run = RunInfo {
            scenario: "hello",
            started_at: String::new(),
            targets: Vec::new(),
            concurrency: 1,
            rate_per_s: None,
            timeout_secs: 30,
        };
        let line = final_line(&run, "ok", &analyse(&rec));
        assert!(
            line.contains("mean 3.00 ms, p50 2.00 ms, p95 6.00 ms"),
            "{line}"
        );
    }
}
