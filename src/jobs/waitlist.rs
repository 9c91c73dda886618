//! The waitlist job: on every node, a pass whenever the dispatcher signals units coming
//! back or an order settling, and a full pass on every tick (the first one at start, for
//! what happened while no node ran). Offers are exactly once however many nodes try
//! (`app::waitlist::offers`).

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::waitlist::Offers;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct WaitlistJob {
    pub offers: Arc<Offers>,
    /// The safety-net pass (`waitlist_interval_ms`).
    pub interval: Duration,
}

#[async_trait]
impl Job for WaitlistJob {
    fn name(&self) -> &'static str {
        "waitlist-offers"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: true,
            scope: Scope::EveryNode,
            wake: Some(self.offers.signal.wake()),
        }
    }

    async fn run(&self, _now: Timestamp, trigger: Trigger) -> anyhow::Result<()> {
        self.offers.pass(trigger == Trigger::Timer).await?;
        Ok(())
    }
}
