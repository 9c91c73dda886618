//! The outbox (DESIGN §4): every state change appends its event in the same transaction;
//! [`OutboxStore`] reads them back in id order for the dispatcher.

use super::error::StoreResult;
use crate::domain::events::Event;
use async_trait::async_trait;

#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn last_event_id(&self) -> StoreResult<i64>;
    /// Events with `id > after`, ascending, at most `limit`.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;
}
