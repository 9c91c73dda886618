//! The verify job (issue 10's jobs "like ShedLock"): on the one node holding its lease,
//! every `verify_interval_secs` it runs what `stampede verify` runs (`app::audit`), sets
//! `ledger_drift` to the number of differences found, and logs each difference once — when
//! it first appears, not at every run while it lasts; one that goes away and comes back is
//! logged again. A difference is for an operator to look into: the job repairs nothing.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::audit;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::Store;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The job's name and lease.
pub const VERIFY_LEASE: &str = "verify";

pub struct VerifyJob {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// `verify_interval_secs`.
    pub interval: Duration,
    /// The differences logged so far that the last run still found.
    pub logged: Mutex<HashSet<String>>,
}

impl VerifyJob {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, interval: Duration) -> VerifyJob {
        VerifyJob {
            store,
            metrics,
            interval,
            logged: Mutex::new(HashSet::new()),
        }
    }
}

#[async_trait]
impl Job for VerifyJob {
    fn name(&self) -> &'static str {
        VERIFY_LEASE
    }

    /// Not at start: a node starting (or a cluster restarting) is busy enough, and the
    /// books it would check are the ones the last run checked.
    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: false,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    async fn run(&self, _now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        let report = audit::run(self.store.as_ref()).await?;
        self.metrics.verify_runs.inc();
        self.metrics
            .ledger_drift
            .set(i64::try_from(report.problems.len()).unwrap_or(i64::MAX));
        let fresh = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            newly_found(&mut logged, &report.problems)
        };
        for problem in &fresh {
            tracing::error!(difference = %problem, "verify found a difference in the books");
        }
        if report.is_clean() {
            tracing::debug!(
                products = report.products,
                orders = report.orders,
                "verify: clean"
            );
        }
        Ok(())
    }
}

/// The problems not logged before; `logged` becomes exactly `problems`, so one that goes
/// away and returns is new again.
fn newly_found(logged: &mut HashSet<String>, problems: &[String]) -> Vec<String> {
    let fresh = problems
        .iter()
        .filter(|p| !logged.contains(*p))
        .cloned()
        .collect();
    *logged = problems.iter().cloned().collect();
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn each_difference_is_logged_when_it_appears_and_again_when_it_returns() {
        let mut logged = HashSet::new();
        assert_eq!(
            newly_found(&mut logged, &lines(&["a", "b"])),
            lines(&["a", "b"])
        );
        assert!(newly_found(&mut logged, &lines(&["a", "b"])).is_empty());
        assert_eq!(newly_found(&mut logged, &lines(&["b", "c"])), lines(&["c"]));
        assert!(newly_found(&mut logged, &[]).is_empty());
        assert_eq!(newly_found(&mut logged, &lines(&["a"])), lines(&["a"]));
    }
}
