//! Releases the holds of orders whose payment deadline passed. Safe on several nodes at
//! once: each cancellation re-checks the order's state and deadline in its transaction.

use crate::domain::order::CancelReason;
use crate::domain::Timestamp;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{Store, TransitionOutcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct Sweeper {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub outbox_wake: Arc<Notify>,
    pub interval: Duration,
    pub batch_max: i64,
}

impl Sweeper {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "hold sweeper pass failed");
            }
        }
    }

    /// Expires what is due now; returns how many orders it expired.
    pub async fn sweep_once(&self) -> Result<usize, crate::store::StoreError> {
        let now = Timestamp::now();
        let due = self.store.due_orders(now, self.batch_max).await?;
        let mut expired = 0;
        for order_id in due {
            if let TransitionOutcome::Done(_) = self
                .store
                .cancel_order(order_id, CancelReason::Expired, now)
                .await?
            {
                expired += 1;
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
            self.outbox_wake.notify_one();
        }
        Ok(expired)
    }
}
