//! What the dispatcher hands events to, besides the state it feeds itself (live streams,
//! gate, listing cache, deny-list). The wiring registers the subscribers (the waitlist
//! worker's signal, the points earner's queue), so this module never imports the work they
//! start.

use crate::domain::events::Event;

/// Receives every event this node dispatches, in outbox order. Called on the dispatcher's
/// task: it must not block or wait; it should note what it needs and wake its own worker.
pub trait Subscriber: Send + Sync {
    fn deliver(&self, event: &Event);
}
