//! Dead letters (DESIGN §4): messages a consumer gave up on, kept with their error for an
//! operator to list, replay through their handler, or discard, and for the retry job.

use crate::clock::SharedClock;
use crate::events::Handlers;
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;

pub struct DeadLetters {
    pub store: Arc<dyn Store>,
    /// Every handler of this node, by name: a replay runs the letter's own.
    pub handlers: Handlers,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
}
