//! The in-process refund retrier (issue 11), registered only without Kafka (with Kafka the
//! `refund-retrier` consumer group does this work, `handlers::RefundRetrier`). On the one
//! node holding its lease, every `refund_retry_interval_secs` it reads the
//! `payment.refund_failed` events the retrier has neither given back nor given up on,
//! oldest first, and asks the gateway again for each (`Payments::retry_refund`, which
//! records `(refund-retrier, event id)` in `processed_events` on success, so a second run
//! changes nothing).
//!
//! A refund that fails again stays for the next run. After `consumer_max_attempts` failed
//! runs — the same number a Kafka consumer tries a message before dead-lettering it — it
//! becomes a dead letter of `refund-retrier`: the dead-letter job retries it
//! `dlq_retry_max` more times, then it waits for an operator, and this job passes it over.
//!
//! **Attempts are counted in memory**, per event, on the node holding the lease. A restart
//! or a lease that moves starts the count again, which only means a few more gateway calls
//! before the letter is kept: a failed refund is never dropped either way, and no table
//! is needed for a number that only decides when to call an operator.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::payments::{Payments, REFUND_RETRIER};
use crate::domain::events::Event;
use crate::domain::Timestamp;
use crate::metrics::{HandlerLabels, Metrics};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed refunds asked for again per run at most, oldest first; the rest wait.
pub const REFUND_RETRY_BATCH_MAX: i64 = 100;

pub struct RefundRetryJob {
    pub payments: Arc<Payments>,
    pub metrics: Arc<Metrics>,
    /// `refund_retry_interval_secs`.
    pub interval: Duration,
    /// `consumer_max_attempts`: failed runs before a refund becomes a dead letter.
    pub max_attempts: u32,
    /// Failed runs per event id, on this node (see the module comment).
    attempts: Mutex<HashMap<i64, u32>>,
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefundRetryRun {
    pub refunded: usize,
    /// Failed again, left for the next run.
    pub failed: usize,
    /// Failed for the last time, kept as dead letters.
    pub dead_lettered: usize,
}

impl RefundRetryJob {
    pub fn new(
        payments: Arc<Payments>,
        metrics: Arc<Metrics>,
        interval: Duration,
        max_attempts: u32,
    ) -> RefundRetryJob {
        RefundRetryJob {
            payments,
            metrics,
            interval,
            max_attempts,
            attempts: Mutex::default(),
        }
    }

    /// One pass over the failed refunds due now.
    pub async fn retry_due(&self) -> anyhow::Result<RefundRetryRun> {
        let due = self.payments.failed_refunds(REFUND_RETRY_BATCH_MAX).await?;
        // The scan is oldest first, so an event stays in it until it is given back or kept
        // as a dead letter: a count whose event is not in it has nothing left to count.
        self.counts()
            .retain(|id, _| due.iter().any(|event| event.id == *id));
        // Half the interval, so that the lease (two intervals) outlasts the run and no
        // other node asks the gateway for the same refund meanwhile.
        let budget = Instant::now() + self.interval / 2;
        let mut run = RefundRetryRun::default();
        for event in &due {
            if Instant::now() > budget && run != RefundRetryRun::default() {
                break;
            }
            match self.payments.retry_refund(REFUND_RETRIER, event).await {
                Ok(()) => {
                    self.counts().remove(&event.id);
                    self.count_processed();
                    run.refunded += 1;
                }
                Err(e) => {
                    if self.failed(event, &format!("{e:#}")).await {
                        run.dead_lettered += 1;
                    } else {
                        run.failed += 1;
                    }
                }
            }
        }
        Ok(run)
    }

    /// Counts a failed attempt; `true` when it was the last and the refund is now a dead
    /// letter. A letter that could not be written is tried again at the next failure.
    async fn failed(&self, event: &Event, error: &str) -> bool {
        let labels = handler_labels();
        self.metrics.consumer_failed.get_or_create(&labels).inc();
        let attempts = {
            let mut counts = self.counts();
            let count = counts.entry(event.id).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        if attempts < self.max_attempts {
            tracing::warn!(event_id = event.id, attempts, error, "refund retry failed");
            return false;
        }
        match self
            .payments
            .dead_letter_refund(event, error, attempts)
            .await
        {
            Ok(letter) => {
                self.counts().remove(&event.id);
                self.metrics
                    .consumer_dead_lettered
                    .get_or_create(&labels)
                    .inc();
                tracing::error!(
                    event_id = event.id,
                    dead_letter = letter.id,
                    attempts,
                    error,
                    "refund retries exhausted; kept as a dead letter"
                );
                true
            }
            Err(e) => {
                tracing::error!(event_id = event.id, error = %e,
                    "could not keep the failed refund as a dead letter; retried next run");
                false
            }
        }
    }

    fn count_processed(&self) {
        let labels = handler_labels();
        self.metrics.consumer_processed.get_or_create(&labels).inc();
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, u32>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The retrier's metrics are the consumer's (`consumer_*{handler="refund-retrier"}`): the
/// job stands in for the consumer group when there is no Kafka.
fn handler_labels() -> HandlerLabels {
    HandlerLabels {
        handler: REFUND_RETRIER.to_owned(),
    }
}

#[async_trait]
impl Job for RefundRetryJob {
    /// Also its lease. The same name as the consumer's: only one of them runs on a cluster.
    fn name(&self) -> &'static str {
        REFUND_RETRIER
    }

    /// Not at start: a refund that just failed waits one interval before it is asked for
    /// again, and what failed while no node ran is found by the first run.
    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: false,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    async fn run(&self, _now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        let run = self.retry_due().await?;
        if run.refunded + run.failed + run.dead_lettered > 0 {
            tracing::info!(
                refunded = run.refunded,
                failed = run.failed,
                dead_lettered = run.dead_lettered,
                "failed refunds retried"
            );
        }
        if run.failed + run.dead_lettered > 0 {
            anyhow::bail!(
                "failed refunds failed again: {} left for the next run, {} kept as dead letters",
                run.failed,
                run.dead_lettered
            );
        }
        Ok(())
    }
}
