//! Dead letters (DESIGN §4): messages a consumer gave up on, kept with their error for an
//! operator to list, replay through their handler, or discard, and for the retry job.
//!
//! **Replay** parses the stored message back into its event and hands it to the handler the
//! letter names, as its consumer would have: an event type the handler does not act on is
//! done with at once. On success the letter is `replayed`; otherwise it stays `open` with
//! one more attempt and the new error, and the caller gets the reason. A letter whose
//! message is not an event this system wrote, or whose handler this node does not run, is
//! refused the same way (each with its own code), so its error says why.
//!
//! **Replaying twice does nothing twice.** Every handler records `(handler, event id)` in
//! `processed_events` in the same transaction as its effect. A message that was processed
//! meanwhile (a redelivery got through, another operator replayed it, the retry job did)
//! changes nothing the second time: the replay succeeds and settles the letter, and the
//! effect happened once. Two replays of one letter at once both run the handler (one
//! effect) and one settles it; the other answers with the settled letter.
//!
//! **Order.** `replay_all` and the retry job go oldest first, so the letters of one
//! aggregate replay in the order their events were written.
//!
//! **The retry job** (`jobs::dead_letters`) retries open letters it has retried fewer than
//! `dlq_retry_max` times, counting each failure as an automatic retry; after that they wait
//! for an operator, who can still replay or discard them.

use super::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::{Actor, Role, Timestamp};
use crate::events::message::EventMessage;
use crate::events::Handlers;
use crate::metrics::Metrics;
use crate::store::{DeadLetterRecord, Page, PageRequest, Store, MAX_PAGE_SIZE};
use std::sync::Arc;

/// Letters one run of the retry job retries at most; the rest wait for the next run.
pub const RETRY_BATCH_MAX: i64 = 1000;
/// Open letters one `replay_all` replays at most; run it again for more.
pub const REPLAY_ALL_MAX: usize = 10_000;
/// Characters of a handler's error kept on the letter.
const STORED_ERROR_MAX_CHARS: usize = 2000;
/// Characters of a handler's error in a refusal (an API answer, a command's output).
const REFUSAL_MAX_CHARS: usize = 300;

pub struct DeadLetters {
    pub store: Arc<dyn Store>,
    /// Every handler of this node, by name: a replay runs the letter's own.
    pub handlers: Handlers,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
}

/// What `replay_all` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayAll {
    pub replayed: usize,
    pub failed: usize,
    /// Settled by someone else between the listing and their replay.
    pub skipped: usize,
}

/// What one run of the retry job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryRun {
    pub replayed: usize,
    pub failed: usize,
    /// Open letters after the run (retried out or not).
    pub open: i64,
}

/// Who is replaying: an operator's failure is not one of the job's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Operator,
    RetryJob,
}

impl DeadLetters {
    /// Newest first; only those in `status` when given.
    pub async fn list(
        &self,
        actor: &Actor,
        status: Option<DeadLetterStatus>,
        page: PageRequest,
    ) -> AppResult<Page<DeadLetterRecord>> {
        require(actor, &[Role::Admin])?;
        Ok(self.store.dead_letters(status, page).await?)
    }

    pub async fn get(&self, actor: &Actor, id: i64) -> AppResult<DeadLetterRecord> {
        require(actor, &[Role::Admin])?;
        self.letter(id).await
    }

    /// Runs an open letter's message through its handler again: the `replayed` letter, or
    /// why not (the letter then stays open, with one more attempt and the reason).
    pub async fn replay(&self, actor: &Actor, id: i64) -> AppResult<DeadLetterRecord> {
        require(actor, &[Role::Admin])?;
        self.replay_open(id).await
    }

    /// Replays every open letter, oldest first (at most [`REPLAY_ALL_MAX`]); a failure does
    /// not stop the others.
    pub async fn replay_all(&self, actor: &Actor) -> AppResult<ReplayAll> {
        require(actor, &[Role::Admin])?;
        let mut done = ReplayAll::default();
        for id in self.open_letters_oldest_first().await? {
            match self.replay_open(id).await {
                Ok(_) => done.replayed += 1,
                Err(AppError::DeadLetterNotOpen) => done.skipped += 1,
                Err(AppError::Store(e)) => return Err(e.into()),
                Err(_) => done.failed += 1,
            }
        }
        Ok(done)
    }

    /// `open → discarded`: the operator gives up on the message.
    pub async fn discard(&self, actor: &Actor, id: i64) -> AppResult<DeadLetterRecord> {
        require(actor, &[Role::Admin])?;
        let now = self.clock.now();
        if !self
            .store
            .settle_dead_letter(id, DeadLetterStatus::Discarded, now)
            .await?
        {
            // Unknown, or settled already: which one decides the answer.
            self.letter(id).await?;
            return Err(AppError::DeadLetterNotOpen);
        }
        self.metrics.dead_letters_discarded.inc();
        tracing::info!(dead_letter = id, "dead letter discarded");
        self.letter(id).await
    }

    /// The retry job's run: each open letter retried fewer than `max_retries` times gets
    /// one more try (at most [`RETRY_BATCH_MAX`] per run); a failure counts as a retry.
    pub async fn retry_due(&self, now: Timestamp, max_retries: u32) -> AppResult<RetryRun> {
        let max_retries = i32::try_from(max_retries).unwrap_or(i32::MAX);
        let due = self
            .store
            .retryable_dead_letters(max_retries, RETRY_BATCH_MAX)
            .await?;
        let mut run = RetryRun::default();
        for letter in &due {
            match self.replay_letter(letter, By::RetryJob, now).await {
                Ok(_) => run.replayed += 1,
                // Settled by an operator while the job ran.
                Err(AppError::DeadLetterNotOpen) => {}
                Err(AppError::Store(e)) => return Err(e.into()),
                Err(_) => run.failed += 1,
            }
        }
        let first = PageRequest { page: 1, size: 1 };
        run.open = self
            .store
            .dead_letters(Some(DeadLetterStatus::Open), first)
            .await?
            .total;
        self.metrics.dead_letters_open.set(run.open);
        Ok(run)
    }

    async fn letter(&self, id: i64) -> AppResult<DeadLetterRecord> {
        self.store
            .dead_letter(id)
            .await?
            .ok_or_else(|| AppError::not_found("dead letter"))
    }

    /// An operator's replay of the letter as it is now: refused unless it is open.
    async fn replay_open(&self, id: i64) -> AppResult<DeadLetterRecord> {
        let letter = self.letter(id).await?;
        if letter.status != DeadLetterStatus::Open {
            return Err(AppError::DeadLetterNotOpen);
        }
        self.replay_letter(&letter, By::Operator, self.clock.now())
            .await
    }

    /// The ids of every open letter up to [`REPLAY_ALL_MAX`], oldest first. Read in pages
    /// before any replay, since replaying moves letters out of the open list.
    async fn open_letters_oldest_first(&self) -> AppResult<Vec<i64>> {
        let mut letters = Vec::new();
        for page in 1.. {
            let request = PageRequest {
                page,
                size: MAX_PAGE_SIZE,
            };
            let read = self
                .store
                .dead_letters(Some(DeadLetterStatus::Open), request)
                .await?;
            let last = read.items.len() < usize::try_from(MAX_PAGE_SIZE).unwrap_or(0);
            letters.extend(read.items.iter().map(|l| l.id));
            if last || letters.len() >= REPLAY_ALL_MAX {
                break;
            }
        }
        // Pages are newest first; a letter that moved between two reads may show twice.
        letters.sort_unstable();
        letters.dedup();
        letters.truncate(REPLAY_ALL_MAX);
        Ok(letters)
    }

    /// Processes one open letter and settles it, or records the failed attempt (an
    /// automatic retry when the job made it) and returns why.
    async fn replay_letter(
        &self,
        letter: &DeadLetterRecord,
        by: By,
        now: Timestamp,
    ) -> AppResult<DeadLetterRecord> {
        if let Err(refusal) = self.process(letter).await {
            let automatic = by == By::RetryJob;
            let error = limited(&refusal.to_string(), STORED_ERROR_MAX_CHARS);
            tracing::warn!(dead_letter = letter.id, handler = %letter.handler, automatic,
                error = %error, "dead letter replay failed");
            self.store
                .dead_letter_failed(letter.id, &error, automatic, now)
                .await?;
            match by {
                By::Operator => self.metrics.dead_letters_replay_failed.inc(),
                By::RetryJob => self.metrics.dead_letters_retry_failed.inc(),
            };
            return Err(refusal);
        }
        let settled = self
            .store
            .settle_dead_letter(letter.id, DeadLetterStatus::Replayed, now)
            .await?;
        let current = self.letter(letter.id).await?;
        if settled {
            self.metrics.dead_letters_replayed.inc();
            tracing::info!(dead_letter = letter.id, handler = %letter.handler, ?by,
                "dead letter replayed");
            return Ok(current);
        }
        // Settled meanwhile: replayed by someone else is the same outcome; a letter
        // discarded meanwhile stays discarded (the effect, if any, happened once).
        match current.status {
            DeadLetterStatus::Replayed => Ok(current),
            DeadLetterStatus::Open | DeadLetterStatus::Discarded => {
                Err(AppError::DeadLetterNotOpen)
            }
        }
    }

    /// The letter's message through its handler, as its consumer would have run it.
    async fn process(&self, letter: &DeadLetterRecord) -> AppResult<()> {
        let handler = self.handlers.get(&letter.handler).ok_or_else(|| {
            AppError::UnknownHandler(format!(
                "no handler named {:?} runs on this node",
                limited(&letter.handler, REFUSAL_MAX_CHARS)
            ))
        })?;
        let event = EventMessage::parse(letter.message.as_bytes())
            .and_then(EventMessage::into_event)
            .map_err(|e| {
                AppError::InvalidMessage(format!(
                    "the message cannot be replayed: {}",
                    limited(&e.to_string(), REFUSAL_MAX_CHARS)
                ))
            })?;
        if !handler.wants(&event.event_type) {
            // Its consumer passes such events over: nothing to do.
            return Ok(());
        }
        handler.handle(&event).await.map_err(|e| {
            AppError::ReplayFailed(format!(
                "{} failed again: {}",
                handler.name(),
                limited(&format!("{e:#}"), REFUSAL_MAX_CHARS)
            ))
        })
    }
}

/// The stored message as JSON when it is JSON (as every message this system writes is),
/// else as a string: what listings show.
pub fn message_json(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

/// The event type a message says it carries (`type`), when it says one.
pub fn event_type(message: &serde_json::Value) -> Option<String> {
    message
        .get("type")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// One line of at most `max` characters: control characters (line breaks of a chained
/// error, escapes) become spaces, and a longer text is cut with an ellipsis.
fn limited(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
