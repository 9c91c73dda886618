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
}
