//! The points jobs: earning on every node (each `order.confirmed` the dispatcher sees, and
//! a catch-up of confirmations nobody recorded), and expiry on one node at a time under its
//! lease. What they do is `app::points`.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::points::Points;
use crate::domain::events::{self, Event};
use crate::domain::Timestamp;
use crate::events::Subscriber;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the earner re-reads confirmations nobody recorded (its safety net and retry).
const EARN_CATCH_UP_INTERVAL: Duration = Duration::from_secs(60);
/// Events queued by the dispatcher for the earner; beyond it they wait for the catch-up.
const EARN_QUEUE_MAX: usize = 100_000;

/// `order.confirmed` events handed from this node's dispatcher to its earning job.
#[derive(Default)]
pub struct EarnQueue {
    events: Mutex<Vec<Event>>,
    wake: Arc<Notify>,
}

impl EarnQueue {
    /// Never blocks the dispatcher. A full queue drops the event, which the earner's
    /// catch-up finds later.
    pub fn push(&self, event: &Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() < EARN_QUEUE_MAX {
            events.push(event.clone());
        }
        drop(events);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Subscriber for EarnQueue {
    fn deliver(&self, event: &Event) {
        if event.event_type == events::ORDER_CONFIRMED {
            self.push(event);
        }
    }
}

pub struct EarnJob {
    pub points: Arc<Points>,
    pub queue: Arc<EarnQueue>,
}

#[async_trait]
impl Job for EarnJob {
    fn name(&self) -> &'static str {
        "points-earn"
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: EARN_CATCH_UP_INTERVAL,
            at_start: true,
            scope: Scope::EveryNode,
            wake: Some(self.queue.wake.clone()),
        }
    }

    /// The queued events on a wake-up; those plus a catch-up read on a tick.
    async fn run(&self, _now: Timestamp, trigger: Trigger) -> anyhow::Result<()> {
        let mut due = self.queue.take();
        if trigger == Trigger::Timer {
            match self.points.unearned_confirmations().await {
                Ok(missed) => due.extend(missed),
                Err(e) => tracing::warn!(error = %e, "points catch-up read failed"),
            }
        }
        for event in &due {
            // Each event at the time it is handled: a lot's validity starts then.
            let now = self.points.clock.now();
            if let Err(e) = self.points.earn(event, now).await {
                // Unrecorded, so the next catch-up pass tries it again.
                tracing::warn!(event_id = event.id, error = %e, "earning points failed");
            }
        }
        Ok(())
    }
}

pub struct ExpiryJob {
    pub points: Arc<Points>,
    /// `points_expiry_interval_secs`.
    pub interval: Duration,
}

/// The expiry job's lease.
pub const EXPIRY_LEASE: &str = "points-expiry";

#[async_trait]
impl Job for ExpiryJob {
    fn name(&self) -> &'static str {
        EXPIRY_LEASE
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            every: self.interval,
            at_start: false,
            scope: Scope::OneNode,
            wake: None,
        }
    }

    async fn run(&self, now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
        self.points.expire_due(now).await?;
        Ok(())
    }
}
