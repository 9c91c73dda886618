//! Background lifecycle work that is due by the clock: releases the holds of orders whose
//! payment deadline passed, and confirms purchases paid `auto_confirm_after_secs` ago that
//! the buyer did not confirm (DESIGN §3). Safe on several nodes at once: each transition
//! re-checks the order's state (and deadline) in its own transaction.

use crate::domain::order::CancelReason;
use crate::domain::Timestamp;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{Store, StoreError, TransitionOutcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct Sweeper {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub outbox_wake: Arc<Notify>,
    pub interval: Duration,
    /// Orders expired per pass, and orders confirmed per pass.
    pub batch_max: i64,
    pub auto_confirm_after_secs: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub confirmed: usize,
}

impl Sweeper {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "sweeper pass failed");
            }
        }
    }

    /// Expires, then confirms, what is due now. One failing half does not starve the other:
    /// both run, and the first error is returned.
    pub async fn sweep_once(&self) -> Result<Swept, StoreError> {
        let now = Timestamp::now();
        let expired = self.expire_due(now).await;
        let confirmed = self.confirm_due(now).await;
        let swept = Swept {
            expired: expired?,
            confirmed: confirmed?,
        };
        if swept != Swept::default() {
            self.outbox_wake.notify_one();
        }
        Ok(swept)
    }

    /// Cancels pending orders whose `pay_by` passed, releasing their holds.
    async fn expire_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let due = self.store.due_orders(now, self.batch_max).await?;
        let mut expired = 0;
        for order_id in due {
            if let TransitionOutcome::Done(order) = self
                .store
                .cancel_order(order_id, CancelReason::Expired, now)
                .await?
            {
                expired += 1;
                self.metrics.order_points(&order);
                self.metrics.holds_expired.inc();
                self.metrics
                    .orders_cancelled
                    .get_or_create(&ReasonLabels {
                        reason: "expired".into(),
                    })
                    .inc();
            }
        }
        if expired > 0 {
            tracing::info!(expired, "released holds of unpaid orders");
        }
        Ok(expired)
    }

    /// Confirms paid orders whose `paid_at + auto_confirm_after_secs <= now`. An order the
    /// buyer confirmed, or that was refunded, since it was listed is refused and skipped.
    async fn confirm_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let cutoff = now.minus_secs(self.auto_confirm_after_secs);
        let due = self.store.due_confirmations(cutoff, self.batch_max).await?;
        let mut confirmed = 0;
        for order_id in due {
            if let TransitionOutcome::Done(_) = self.store.confirm_order(order_id, now).await? {
                confirmed += 1;
                self.metrics
                    .orders_confirmed
                    .get_or_create(&ReasonLabels {
                        reason: "auto".into(),
                    })
                    .inc();
            }
        }
        if confirmed > 0 {
            tracing::info!(confirmed, "confirmed purchases automatically");
        }
        Ok(confirmed)
    }
}
