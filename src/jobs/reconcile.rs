//! The payment reconciler (issue 11): on the one node holding its lease, every
//! `payment_reconcile_interval_secs` it resolves the checkouts left open for longer than
//! a grace period by asking the gateway (`app::payments`, `reconcile.rs`). The grace
//! leaves a buyer who is paying right now to the `pay` call and the webhook. A second run
//! over the same checkout changes nothing (a paid order stays paid, a resolved checkout
//! is not listed), so a lease that lapses mid-run costs a gateway call, not money.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::payments::Payments;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The job's name and lease.
pub const RECONCILE_LEASE: &str = "payment-reconciler";
/// How long a checkout stays open before the reconciler looks at it.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(30);
/// Checkouts resolved per run, oldest first; the rest wait for the next run.
pub const RECONCILE_BATCH_MAX: i64 = 200;

pub struct ReconcileJob {
    pub payments: Arc<Payments>,
    /// `payment_reconcile_interval_secs`.
    pub interval: Duration,
}

#[async_trait]
impl Job for ReconcileJob {
    fn name(&self) -> &'static str {
        RECONCILE_LEASE
    }

    /// Also at start: what a crash left open is resolved as soon as a node is back.
    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: true,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    async fn run(&self, now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        let grace_ms = i64::try_from(RECONCILE_GRACE.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::from_millis(now.millis().saturating_sub(grace_ms));
        let run = self.payments.reconcile(cutoff, RECONCILE_BATCH_MAX).await?;
        if run.paid + run.voided + run.abandoned + run.failed > 0 {
            tracing::info!(
                paid = run.paid,
                voided = run.voided,
                abandoned = run.abandoned,
                left_open = run.left_open,
                failed = run.failed,
                "checkouts reconciled"
            );
        }
        if run.failed > 0 {
            anyhow::bail!("{} checkouts could not be reconciled", run.failed);
        }
        Ok(())
    }
}
