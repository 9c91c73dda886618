//! The once-per-cluster work the consumer workers run (DESIGN §4), one [`Handler`] per
//! consumer group. Each is exactly once in effect: points and refunds record
//! `(handler, event id)` in `processed_events` in the transaction of their effect; the
//! waitlist's offers are exactly once by construction (an entry is offered by a
//! conditional update), so its handler only names the products and orders to look at.

use crate::app::payments::{Payments, REFUND_RETRIER};
use crate::app::points::{Points, EARN_CONSUMER};
use crate::app::waitlist::Signal;
use crate::domain::events::{self, Event};
use crate::events::{Handler, Handlers, Subscriber};
use crate::store::EarnOutcome;
use async_trait::async_trait;
use std::sync::Arc;

/// Every handler, as the wiring gives them to the workers, the retry job and replays.
pub fn all(points: Arc<Points>, payments: Arc<Payments>, signal: Arc<Signal>) -> Handlers {
    Handlers::new(vec![
        Arc::new(PointsEarner { points }),
        Arc::new(WaitlistOffers { signal }),
        Arc::new(RefundRetrier { payments }),
    ])
}

/// Points on purchase confirmation (seed 001).
pub struct PointsEarner {
    pub points: Arc<Points>,
}

#[async_trait]
impl Handler for PointsEarner {
    fn name(&self) -> &'static str {
        // The same name as the in-process earner's, so neither path earns twice.
        EARN_CONSUMER
    }

    fn aggregates(&self) -> &'static [&'static str] {
        &[events::ORDER]
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == events::ORDER_CONFIRMED
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        // Each event at the time it is handled: a lot's validity starts then.
        let now = self.points.clock.now();
        match self.points.earn(event, now).await? {
            EarnOutcome::NotConfirmed => anyhow::bail!(
                "order {} is not confirmed in the database",
                event.aggregate_id
            ),
            EarnOutcome::Earned { .. } | EarnOutcome::Nothing | EarnOutcome::AlreadyProcessed => {
                Ok(())
            }
        }
    }
}

/// Waitlist offers: units coming back, or an order leaving `pending_payment`, wake this
/// node's offer pass (`jobs::waitlist`), which settles and makes offers from the state.
pub struct WaitlistOffers {
    pub signal: Arc<Signal>,
}

#[async_trait]
impl Handler for WaitlistOffers {
    fn name(&self) -> &'static str {
        "waitlist-offers"
    }

    fn aggregates(&self) -> &'static [&'static str] {
        &[events::PRODUCT, events::ORDER]
    }

    fn wants(&self, event_type: &str) -> bool {
        matches!(
            event_type,
            events::STOCK_CHANGED
                | events::ORDER_PAID
                | events::ORDER_CANCELLED
                | events::ORDER_EXPIRED
                | events::ORDER_REFUNDED
        )
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        self.signal.deliver(event);
        Ok(())
    }
}

/// Gateway refunds that failed, asked for again (seed 002's retries, then dead letters).
pub struct RefundRetrier {
    pub payments: Arc<Payments>,
}

#[async_trait]
impl Handler for RefundRetrier {
    fn name(&self) -> &'static str {
        REFUND_RETRIER
    }

    fn aggregates(&self) -> &'static [&'static str] {
        &[events::ORDER]
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == events::PAYMENT_REFUND_FAILED
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        self.payments.retry_refund(self.name(), event).await
    }
}
