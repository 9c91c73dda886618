//! The flags every scenario shares, and what a run makes of them: the runner's plan, the
//! run's description in summary.json, the one HTTP client and the endpoints on every target.

use crate::api::{self, Target};
use crate::{runner, summary};
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

/// Fastest open-loop schedule accepted, in attempts per second.
const MAX_RATE_PER_S: f64 = 10_000_000.0;

/// The flags every scenario shares.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Base URL of a server (http only). Repeat to spread attempts round-robin over nodes;
    /// setup and checks go to the first.
    #[arg(long = "target", value_name = "URL", required = true, value_parser = Target::parse)]
    pub(crate) targets: Vec<Target>,
    /// Requests in flight: exactly this many in a closed loop, at most this many with --rate.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,
    /// Open loop: launch this many attempts per second on schedule, whatever completes.
    /// Attempts due while --concurrency requests are in flight are dropped (counted as errors).
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Per-request timeout; a request without an answer by then counts as an error.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) timeout_secs: u64,
    /// Directory for summary.json and report.html (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

impl LoadArgs {
    pub(crate) fn plan(&self, attempts: u64) -> runner::Plan {
        let pace = match self.rate {
            Some(per_second) => runner::Pace::Open { per_second },
            None => runner::Pace::Closed,
        };
        runner::Plan {
            attempts,
            concurrency: self.concurrency,
            pace,
            until: None,
            think: Duration::ZERO,
        }
    }

    pub(crate) fn info(&self, scenario: &'static str) -> summary::RunInfo {
        summary::RunInfo {
            scenario,
            started_at: summary::now_rfc3339(),
            targets: self.targets.iter().map(|t| t.as_str().to_owned()).collect(),
            concurrency: self.concurrency,
            rate_per_s: self.rate,
            timeout_secs: self.timeout_secs,
        }
    }

    pub(crate) fn client(&self) -> anyhow::Result<reqwest::Client> {
        api::client(self.concurrency, Duration::from_secs(self.timeout_secs))
    }

    /// `path` on every target, parsed once before the run.
    pub(crate) fn endpoints(&self, path: &str) -> anyhow::Result<Vec<Url>> {
        self.targets.iter().map(|t| t.endpoint(path)).collect()
    }
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_S {
        Ok(rate)
    } else {
        Err(format!(
            "must be above 0 and at most {MAX_RATE_PER_S} per second"
        ))
    }
}
