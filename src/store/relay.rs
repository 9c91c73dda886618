//! How far the outbox relay has published (DESIGN §4): the last event id the broker
//! acknowledged, with every event before it. The relay reads from here when it takes its
//! lease, so a new holder resumes where the last acknowledged batch ended.

use super::error::StoreResult;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait RelayStore: Send + Sync {
    /// The last event id relay `name` has published; 0 before its first.
    async fn relay_position(&self, name: &str) -> StoreResult<i64>;
    /// Records that relay `name` has published everything up to `last_event_id`. Never
    /// moves back: a relay that lost its lease and records late changes nothing.
    async fn advance_relay(
        &self,
        name: &str,
        last_event_id: i64,
        now: Timestamp,
    ) -> StoreResult<()>;
}
