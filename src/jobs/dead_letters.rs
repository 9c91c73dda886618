//! The dead-letter job (DESIGN §4, seed 002): on the one node holding its lease, every
//! `dlq_retry_interval_secs` it retries the open dead letters it has retried fewer than
//! `dlq_retry_max` times, then leaves them to an operator. What a retry does is
//! `app::dead_letters`.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::dead_letters::DeadLetters;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The job's name and lease.
pub const DLQ_RETRY_LEASE: &str = "dlq-retry";

pub struct DlqRetryJob {
    pub dead_letters: Arc<DeadLetters>,
    /// `dlq_retry_interval_secs`.
    pub interval: Duration,
    /// `dlq_retry_max`.
    pub max_retries: u32,
}

#[async_trait]
impl Job for DlqRetryJob {
    fn name(&self) -> &'static str {
        DLQ_RETRY_LEASE
    }

    /// Not at start: a letter waits at least one interval between its failures, as the
    /// consumer's own retries already failed just before it was dead-lettered.
    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: false,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    async fn run(&self, now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        let run = self.dead_letters.retry_due(now, self.max_retries).await?;
        if run.replayed + run.failed > 0 {
            tracing::info!(
                replayed = run.replayed,
                failed = run.failed,
                open = run.open,
                "dead letters retried"
            );
        }
        Ok(())
    }
}
