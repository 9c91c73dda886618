//! The once-per-cluster work (DESIGN §4): each [`Handler`] is one consumer group on Kafka
//! (`stampede worker`, or `serve` with workers on), and what the dead-letter job and the
//! operators' replay run a stored message through. The handlers themselves are use cases;
//! the wiring builds them (`jobs::handlers`), so this module never imports the work.

use crate::domain::events::Event;
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait Handler: Send + Sync {
    /// Its stable name: the consumer group is `{prefix}{name}`, and it is the `handler` of
    /// its dead letters and the consumer of its `processed_events` rows.
    fn name(&self) -> &'static str;
    /// The aggregate types whose topics it reads.
    fn aggregates(&self) -> &'static [&'static str];
    /// Whether it acts on this event type; others are passed over (and committed).
    fn wants(&self, event_type: &str) -> bool;
    /// Handles one event, exactly once in effect: it records `(name, event id)` in the
    /// same transaction as its effect, so a redelivery changes nothing. An error is retried
    /// with backoff, then dead-lettered.
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;
}

/// The handlers of a node, found by name (a dead letter names its handler).
#[derive(Clone, Default)]
pub struct Handlers(Vec<Arc<dyn Handler>>);

impl Handlers {
    pub fn new(handlers: Vec<Arc<dyn Handler>>) -> Handlers {
        Handlers(handlers)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Handler>> {
        self.0.iter().find(|h| h.name() == name)
    }

    pub fn all(&self) -> &[Arc<dyn Handler>] {
        &self.0
    }
}
