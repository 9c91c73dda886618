//! How the rest of the node talks to its dispatcher: wake it right after a commit, and wait
//! until it has dispatched what was just committed.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Longest a handler waits for its events to be dispatched before answering anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Lets a handler wait until this node has dispatched the events it just committed, so a
/// response that says "stock is back" is never followed by a refusal from the gate, and the
/// writer's next read of the listing is fresh. Used only off the hot path (cancel, inbound,
/// product changes); everything else only [`wake`](EventSync::wake)s the dispatcher.
#[derive(Clone)]
pub struct EventSync {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    cursor: watch::Receiver<i64>,
}

/// The dispatcher's side of an [`EventSync`]: what wakes it, and where it reports progress.
pub struct DispatchProgress {
    pub wake: Arc<Notify>,
    pub cursor: watch::Sender<i64>,
}

impl EventSync {
    /// A linked pair: handlers hold the `EventSync`, the dispatcher the progress side.
    pub fn new(store: Arc<dyn Store>) -> (EventSync, DispatchProgress) {
        let wake = Arc::new(Notify::new());
        let (cursor, cursor_rx) = watch::channel(0);
        let sync = EventSync {
            store,
            wake: wake.clone(),
            cursor: cursor_rx,
        };
        (sync, DispatchProgress { wake, cursor })
    }

    /// Tells this node's dispatcher to read the outbox now, instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The id of the last event this node has dispatched.
    pub fn cursor(&self) -> i64 {
        *self.cursor.borrow()
    }

    /// Waits (at most [`SYNC_TIMEOUT`]) until this node has dispatched every event committed
    /// so far.
    pub async fn caught_up(&self) {
        let Ok(target) = self.store.last_event_id().await else {
            return;
        };
        self.caught_up_to(target).await;
    }

    /// Waits (at most [`SYNC_TIMEOUT`]) until this node has dispatched every event up to
    /// `target`: the caller's own, when it knows their ids (no read of the outbox's end).
    pub async fn caught_up_to(&self, target: i64) {
        self.wake.notify_one();
        let mut cursor = self.cursor.clone();
        let reached = tokio::time::timeout(SYNC_TIMEOUT, cursor.wait_for(|id| *id >= target)).await;
        if reached.is_err() {
            tracing::warn!(target, "outbox dispatcher is lagging");
        }
    }
}
