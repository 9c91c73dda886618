//! The points jobs: earning on every node (each `order.confirmed` the dispatcher sees, and
//! a catch-up of confirmations nobody recorded), and expiry on one node at a time under its
//! lease. What they do is `app::points`.

use super::scheduler::{Job, Schedule, Scope, Trigger};
use crate::app::points::Points;
use crate::domain::events::{self, Event};
use crate::domain::Timestamp;
use crate::events::Subscriber;
use crate::store::EarnOutcome;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the earner re-reads confirmations nobody recorded (its safety net and retry).
const EARN_CATCH_UP_INTERVAL: Duration = Duration::from_secs(60);
/// Events queued by the dispatcher for the earner; beyond it they wait for the catch-up.
const EARN_QUEUE_MAX: usize = 100_000;
/// A failed earn (a database error: a busy pool, a dropped connection) is tried again
/// after this, doubling each time, rather than at the next catch-up a minute on.
const EARN_RETRY_FIRST: Duration = Duration::from_millis(250);
/// Tries of one event before it is left to the catch-up.
const EARN_RETRIES_MAX: u32 = 6;

/// `order.confirmed` events handed from this node's dispatcher to its earning job.
#[derive(Default)]
pub struct EarnQueue {
    events: Mutex<Vec<Event>>,
    /// Events whose earn failed, with how many times it has.
    failed: Mutex<Vec<(Event, u32)>>,
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

    /// Everything due now: the newly queued events and those whose earn failed before.
    fn take(&self) -> Vec<(Event, u32)> {
        let fresh = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let mut due = std::mem::take(&mut *self.failed.lock().unwrap_or_else(|p| p.into_inner()));
        due.extend(fresh.into_iter().map(|event| (event, 0)));
        due
    }

    /// Keeps `event` for another try, after a pause that doubles with each failure; after
    /// [`EARN_RETRIES_MAX`] it is dropped, and the catch-up finds it (it is unrecorded).
    fn retry(&self, event: Event, failures: u32) {
        if failures >= EARN_RETRIES_MAX {
            return;
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((event, failures));
        let pause = EARN_RETRY_FIRST.saturating_mul(1 << (failures - 1).min(16));
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            wake.notify_one();
        });
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
                Ok(missed) => due.extend(missed.into_iter().map(|event| (event, 0))),
                Err(e) => tracing::warn!(error = %e, "points catch-up read failed"),
            }
        }
        for (event, failures) in due {
            // Each event at the time it is handled: a lot's validity starts then.
            let now = self.points.clock.now();
            match self.points.earn(&event, now).await {
                Ok(EarnOutcome::NotConfirmed) => {
                    // The books do not show the confirmation (yet): unrecorded, like an error.
                    self.queue.retry(event, failures + 1);
                }
                Ok(_) => {}
                Err(e) => {
                    // Unrecorded: tried again shortly, and by every catch-up pass after that.
                    tracing::warn!(event_id = event.id, error = %e, "earning points failed");
                    self.queue.retry(event, failures + 1);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed(id: i64) -> Event {
        Event {
            id,
            aggregate_type: events::ORDER.to_owned(),
            aggregate_id: 7,
            event_type: events::ORDER_CONFIRMED.to_owned(),
            payload: "{}".to_owned(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[tokio::test]
    async fn a_failed_earn_is_tried_again_within_a_second_not_at_the_next_catch_up() {
        let queue = EarnQueue::default();
        queue.push(&confirmed(1));
        let first = queue.take();
        assert_eq!(first.len(), 1);
        // The job was woken by the push; that permit is spent.
        queue.wake.notified().await;

        queue.retry(first[0].0.clone(), 1);
        tokio::time::timeout(Duration::from_secs(1), queue.wake.notified())
            .await
            .expect("the failed event wakes the earner again");
        let again = queue.take();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].0.id, again[0].1), (1, 1));
        assert!(queue.take().is_empty(), "taken once");
    }

    #[tokio::test]
    async fn an_event_that_keeps_failing_is_left_to_the_catch_up() {
        let queue = EarnQueue::default();
        queue.retry(confirmed(2), EARN_RETRIES_MAX);
        assert!(queue.take().is_empty());
        queue.retry(confirmed(3), EARN_RETRIES_MAX - 1);
        assert_eq!(queue.take().len(), 1);
    }
}
