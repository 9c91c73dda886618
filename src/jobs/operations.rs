//! The operations page's background work (issue 13, `app::operations`), on every node: the
//! heartbeat each second, and the stock gauges of the products in play every few seconds.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::operations::Operations;
use crate::app::orders::Orders;
use crate::cluster::gate::LocalGate;
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// How often a node writes its heartbeat: the page's resolution.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often the stock gauges are read again (Prometheus scrapes every 5 to 15 s).
pub const GAUGES_EVERY: Duration = Duration::from_secs(5);

pub struct HeartbeatJob {
    pub operations: Arc<Operations>,
    /// Whether the node is draining.
    pub orders: Arc<Orders>,
    /// Told when another node is seen: its attempts are not in this gate's memory.
    pub gate: Arc<LocalGate>,
}

#[async_trait]
impl Job for HeartbeatJob {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: HEARTBEAT_EVERY,
            at_start: true,
            scope: Scope::EveryNode,
            wake: None,
        }
    }

    async fn run(&self, _now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        let draining = self.orders.placement.is_draining();
        self.operations.beat(draining).await?;
        if self.operations.others_alive().await? {
            self.gate.not_alone();
        }
        Ok(())
    }
}

pub struct StockGaugesJob {
    pub operations: Arc<Operations>,
}

#[async_trait]
impl Job for StockGaugesJob {
    fn name(&self) -> &'static str {
        "stock-gauges"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: GAUGES_EVERY,
            at_start: true,
            scope: Scope::EveryNode,
            wake: None,
        }
    }

    async fn run(&self, _now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        Ok(self.operations.refresh_gauges().await?)
    }
}
