//! Dead letters (DESIGN §4): messages a consumer gave up on after its retries, kept with
//! where they came from and why they failed, for operators to list, replay or discard and
//! for the retry job. Every status change is a conditional write on `status = 'open'`.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::Timestamp;
use async_trait::async_trait;

/// A message a handler gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The handler's name (`points-earn`): its consumer group is `{prefix}{handler}`.
    pub handler: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The message's value as received.
    pub message: String,
    /// The outbox id, when the message was a readable event.
    pub event_id: Option<i64>,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub id: i64,
    pub handler: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub message: String,
    pub event_id: Option<i64>,
    pub error: String,
    pub attempts: i32,
    pub retries: i32,
    pub status: DeadLetterStatus,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    pub updated_at: Timestamp,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Keeps the message as an open dead letter. The same message of the same handler
    /// (topic, partition, offset) dead-lettered again reopens its row with the new error
    /// and one more attempt.
    async fn insert_dead_letter(
        &self,
        letter: &NewDeadLetter,
        now: Timestamp,
    ) -> StoreResult<DeadLetterRecord>;
    async fn dead_letter(&self, id: i64) -> StoreResult<Option<DeadLetterRecord>>;
    /// Newest first; only those in `status` when given.
    async fn dead_letters(
        &self,
        status: Option<DeadLetterStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<DeadLetterRecord>>;
    /// `open → status` (`replayed` or `discarded`); `false`, changing nothing, when the
    /// letter is not open.
    async fn settle_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// A retry or replay that failed again: one more attempt, the new error; one more
    /// automatic retry when `automatic`. Changes nothing once the letter is settled.
    async fn dead_letter_failed(
        &self,
        id: i64,
        error: &str,
        automatic: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Up to `limit` open letters the retry job has tried fewer than `max_retries` times,
    /// oldest first.
    async fn retryable_dead_letters(
        &self,
        max_retries: i32,
        limit: i64,
    ) -> StoreResult<Vec<DeadLetterRecord>>;
}
