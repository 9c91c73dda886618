//! The outbox (DESIGN §4): every state change appends its event in the same transaction;
//! [`OutboxStore`] reads them back in id order for the dispatcher.

use super::error::StoreResult;
use crate::domain::events::{Event, NewEvent};
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn last_event_id(&self) -> StoreResult<i64>;
    /// Events with `id > after`, ascending, at most `limit`.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;
    /// Appends `events` in one transaction, after claiming `(consumer, event_id)` in
    /// `processed_events` when `claim` is given: an event whose only effect is to say what
    /// happened (a gateway refund that went through, or failed). `false`, appending
    /// nothing, when the claim was made before (a redelivery).
    async fn append_events(
        &self,
        claim: Option<(&str, i64)>,
        events: &[NewEvent],
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Up to `limit` events of `backlog`, oldest first, that `consumer` has neither
    /// processed nor given up on (kept as its dead letter): the in-process consumers'
    /// catch-up when there is no Kafka (points earning, the refund retrier).
    async fn unprocessed_events(
        &self,
        consumer: &str,
        backlog: Backlog,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;
}

/// The event types an in-process consumer re-reads from the outbox. Each has a partial
/// index there, so a scan for the few not yet processed does not read every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// `order.confirmed`, for points earning.
    OrderConfirmed,
    /// `payment.refund_failed`, for the refund retrier.
    PaymentRefundFailed,
}
