//! Background lifecycle work that is due by the clock: releases the holds of orders whose
//! payment deadline passed, and confirms purchases whose last partner order was delivered
//! `auto_confirm_after_secs` ago that the buyer did not confirm (DESIGN §3). On every node:
//! each transition re-checks the order's state (and deadline) in its own transaction, so
//! two nodes never do it twice. Each order goes on its own: one whose transition fails is
//! logged, counted and stepped over, and the orders behind it are still swept
//! (`app::orders::Orders::sweep_each`).

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::orders::Orders;
use crate::domain::Timestamp;
use crate::events::EventSync;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct Sweeper {
    pub orders: Arc<Orders>,
    pub events: EventSync,
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
    /// Expires, then confirms, what is due at `now`. One failing half does not starve the
    /// other: both run, and the first error is returned.
    pub async fn sweep(&self, now: Timestamp) -> anyhow::Result<Swept> {
        let expired = self.orders.expire_due(now, self.batch_max).await;
        let confirmed = self
            .orders
            .confirm_due(now, self.auto_confirm_after_secs, self.batch_max)
            .await;
        let swept = Swept {
            expired: expired?,
            confirmed: confirmed?,
        };
        if swept != Swept::default() {
            self.events.wake();
        }
        Ok(swept)
    }
}

#[async_trait]
impl Job for Sweeper {
    fn name(&self) -> &'static str {
        "sweeper"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: false,
            scope: Scope::EveryNode,
            wake: None,
        }
    }

    async fn run(&self, now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        self.sweep(now).await.map(|_| ())
    }
}
