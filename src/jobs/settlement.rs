//! The settlement job (issue 10, seed 003's 04:00 batch under ShedLock): on the one node
//! holding its lease it looks every minute for business days due and not settled — the
//! previous day once `settlement_at` has passed in `settlement_timezone`, and any days
//! missed while no node ran — and settles them, oldest first. What settling does is
//! `app::settlement`; a second run of a day changes nothing (the store's unique keys), so a
//! lease that lapses mid-run costs time, not money.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::settlement::Settlement;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The job's name and lease.
pub const SETTLEMENT_LEASE: &str = "settlement";
/// How often the holder checks whether a day is due: the latest a statement comes after
/// `settlement_at`. Its lease lasts two of these.
pub const SETTLEMENT_CHECK_INTERVAL: Duration = Duration::from_secs(60);

pub struct SettlementJob {
    pub settlement: Arc<Settlement>,
}

#[async_trait]
impl Job for SettlementJob {
    fn name(&self) -> &'static str {
        SETTLEMENT_LEASE
    }

    /// Also at start: days missed while no node ran are caught up at once.
    fn schedule(&self) -> Schedule {
        Schedule {
            every: SETTLEMENT_CHECK_INTERVAL,
            at_start: true,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "daily at {} (checked every {} s)",
            self.settlement.calendar.describe(),
            SETTLEMENT_CHECK_INTERVAL.as_secs()
        )
    }

    async fn run(&self, now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        for day in self.settlement.settle_due(now).await? {
            tracing::info!(
                business_date = %day.date,
                statements = day.statements.len(),
                "business day settled"
            );
        }
        Ok(())
    }
}
