//! The outbox relay (DESIGN §4): one node of the cluster at a time — the holder of the
//! `kafka-relay` lease — reads the outbox after the position recorded in `relay_progress`,
//! publishes each event to its aggregate's topic keyed by aggregate id, waits until the
//! broker acknowledged every one (idempotent producer, `acks=all`), and only then moves the
//! position. A new holder resumes from the recorded position, so an event is never lost;
//! one acknowledged but not yet recorded when its holder died is published again (consumers
//! dedupe by event id). Each producer publishes in outbox order and never reorders a
//! partition, so per key the first occurrences of events are always in outbox order, also
//! across a failover. A broker outage only delays acknowledgements: the relay keeps its
//! lease, waits, and catches up; placement never waits for it.

use super::KafkaSettings;
use crate::clock::SharedClock;
use crate::domain::events::Event;
use crate::domain::Timestamp;
use crate::events::message::{EventMessage, EVENT_ID_HEADER, EVENT_TYPE_HEADER};
use crate::metrics::Metrics;
use crate::store::Store;
use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The relay's lease in `leases`, and its name in `relay_progress`.
pub const RELAY_LEASE: &str = "kafka-relay";
/// Longest pause after failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Relay {
    pub store: Arc<dyn Store>,
    pub settings: KafkaSettings,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Unique per process: who holds the lease.
    pub holder: String,
    pub lease: Duration,
    pub poll: Duration,
    pub batch_max: i64,
}

/// The lease while this node holds it.
struct Held {
    /// Everything up to here is acknowledged and recorded.
    position: i64,
    renewed: Instant,
}

/// What a round found.
enum Round {
    /// Events were published: look again at once.
    Busy,
    /// Nothing new: wait for the poll.
    Idle,
    /// Another node holds the lease: try again when a third of it has passed.
    Standby,
}

impl Relay {
    /// Relays until `stop` fires.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut producer = None;
        let mut held = None;
        let mut topics = BTreeSet::new();
        let mut backoff = self.poll;
        loop {
            let round = self.round(&mut producer, &mut held, &mut topics);
            let pause = tokio::select! {
                outcome = round => match outcome {
                    Ok(Round::Busy) => Duration::ZERO,
                    Ok(Round::Idle) => {
                        backoff = self.poll;
                        self.poll
                    }
                    Ok(Round::Standby) => self.lease / 3,
                    Err(e) => {
                        self.metrics.relay_failures.inc();
                        tracing::warn!(error = %e, "relay round failed; backing off");
                        // A producer in error is rebuilt rather than trusted again.
                        producer = None;
                        backoff = (backoff * 2).clamp(self.poll, MAX_BACKOFF);
                        backoff
                    }
                },
                _ = stop.changed() => break,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => break,
            }
        }
        self.metrics.relay_active.set(0);
    }

    async fn round(
        &self,
        producer: &mut Option<FutureProducer>,
        held: &mut Option<Held>,
        topics: &mut BTreeSet<String>,
    ) -> anyhow::Result<Round> {
        if !self.keep_lease(held).await? {
            return Ok(Round::Standby);
        }
        let Some(position) = held.as_ref().map(|h| h.position) else {
            return Ok(Round::Standby);
        };
        let batch = self.store.events_after(position, self.batch_max).await?;
        if batch.is_empty() {
            self.metrics.relay_lag_events.set(0);
            return Ok(Round::Idle);
        }
        self.report_lag(position).await;
        let new_types: Vec<&str> = batch
            .iter()
            .map(|e| e.aggregate_type.as_str())
            .filter(|t| !topics.contains(*t))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !new_types.is_empty() {
            self.settings.ensure_topics(&new_types).await?;
            topics.extend(new_types.into_iter().map(str::to_owned));
        }
        let producer = match producer {
            Some(p) => p,
            None => producer.insert(self.producer()?),
        };
        let (deliveries, send_error) = self.send(producer, &batch);
        let Some(acked) = self.acknowledged(deliveries, held).await? else {
            // The lease was lost while waiting: the new holder publishes from the record.
            return Ok(Round::Standby);
        };
        if let Some(last) = acked.checked_sub(1).and_then(|i| batch.get(i)) {
            self.store
                .advance_relay(RELAY_LEASE, last.id, self.clock.now())
                .await?;
            if let Some(h) = held.as_mut() {
                h.position = last.id;
            }
            self.metrics.relay_published.inc_by(acked as u64);
            self.report_lag(last.id).await;
        }
        match send_error {
            Some(e) => Err(e),
            None if acked < batch.len() => {
                anyhow::bail!("the broker acknowledged {acked} of {} events", batch.len())
            }
            None => Ok(Round::Busy),
        }
    }

    /// Takes the lease, or renews it when a third of it has passed; `false` when another
    /// node holds it.
    async fn keep_lease(&self, held: &mut Option<Held>) -> anyhow::Result<bool> {
        if held
            .as_ref()
            .is_some_and(|h| h.renewed.elapsed() < self.lease / 3)
        {
            return Ok(true);
        }
        let now = self.clock.now();
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let until = Timestamp::from_millis(now.millis().saturating_add(lease_ms));
        let renewed = Instant::now();
        if !self
            .store
            .try_lease(RELAY_LEASE, &self.holder, until, now)
            .await?
        {
            if held.take().is_some() {
                tracing::warn!("the relay's lease passed to another node");
            }
            self.metrics.relay_active.set(0);
            return Ok(false);
        }
        match held {
            Some(h) => h.renewed = renewed,
            None => {
                // Read after taking the lease: whatever the last holder recorded.
                let position = self.store.relay_position(RELAY_LEASE).await?;
                tracing::info!(position, "this node now relays the outbox to Kafka");
                self.metrics.relay_active.set(1);
                *held = Some(Held { position, renewed });
            }
        }
        Ok(true)
    }

    /// `relay_lag_events`: outbox events after `position` (ids are dense enough for a
    /// gauge; a failed read leaves the last value).
    async fn report_lag(&self, position: i64) {
        if let Ok(head) = self.store.last_event_id().await {
            self.metrics
                .relay_lag_events
                .set(head.saturating_sub(position).max(0));
        }
    }

    fn producer(&self) -> anyhow::Result<FutureProducer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Never give up on a message: an outage delays acknowledgements, and the relay
            // keeps its lease and waits rather than publish the rest out of order.
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.messages", "200000");
        Ok(config.create()?)
    }

    /// Hands the batch to the producer, in order; stops at the first refusal.
    fn send(
        &self,
        producer: &FutureProducer,
        batch: &[Event],
    ) -> (Vec<(DeliveryFuture, Timestamp)>, Option<anyhow::Error>) {
        let mut deliveries = Vec::with_capacity(batch.len());
        for event in batch {
            let message = EventMessage::of(event);
            let (key, value, id) = (message.key(), message.to_json(), event.id.to_string());
            let topic = self.settings.topic(&event.aggregate_type);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: EVENT_ID_HEADER,
                    value: Some(id.as_str()),
                })
                .insert(Header {
                    key: EVENT_TYPE_HEADER,
                    value: Some(event.event_type.as_str()),
                });
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((delivery, event.created_at)),
                Err((e, _)) => return (deliveries, Some(e.into())),
            }
        }
        (deliveries, None)
    }

    /// How many of the batch, from its start, the broker acknowledged; `None` when the
    /// lease was lost while waiting (renewed meanwhile, so a slow broker keeps it).
    async fn acknowledged(
        &self,
        deliveries: Vec<(DeliveryFuture, Timestamp)>,
        held: &mut Option<Held>,
    ) -> anyhow::Result<Option<usize>> {
        let (futures, created): (Vec<_>, Vec<_>) = deliveries.into_iter().unzip();
        let all = join_all(futures);
        tokio::pin!(all);
        let results = loop {
            tokio::select! {
                results = &mut all => break results,
                _ = tokio::time::sleep(self.lease / 3) => {
                    if !self.keep_lease(held).await? {
                        return Ok(None);
                    }
                    // Still waiting (a slow or absent broker): the lag keeps growing.
                    if let Some(h) = held.as_ref() {
                        self.report_lag(h.position).await;
                    }
                }
            }
        };
        let now = self.clock.now();
        let mut acked = 0;
        for (result, created_at) in results.into_iter().zip(created) {
            match result {
                Ok(Ok(_)) => {
                    acked += 1;
                    let lag_ms = now.millis().saturating_sub(created_at.millis()).max(0);
                    self.metrics
                        .relay_lag_seconds
                        .observe(lag_ms as f64 / 1000.0);
                }
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, "the broker refused an event");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(Some(acked))
    }
}
