//! The consumer workers (DESIGN §4): one consumer group per [`Handler`], `{prefix}{name}`,
//! reading the topics of the handler's aggregates. A message is handled, then its offset
//! stored; the client commits stored offsets every second and when it closes. So an offset
//! is committed only after its message's transaction, and a crash redelivers at most the
//! last second's messages — which changes nothing, as the handler recorded
//! `(handler, event id)` in the transaction of its effect. (Committing each message on its
//! own cost a broker round trip per message per group: most of a node's CPU in a drop.) A failure is
//! retried with exponential backoff; after the last attempt the message becomes a dead
//! letter — a `dead_letters` row and a copy on `{prefix}dlq` — and the partition moves on.
//! A message that is not a valid event is dead-lettered at once.

use super::KafkaSettings;
use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::events::message::{EventMessage, DLQ_TOPIC, EVENT_ID_HEADER, EVENT_TYPE_HEADER};
use crate::events::{Handler, Handlers};
use crate::metrics::{DependencyLabels, HandlerLabels, Metrics, PartitionLabels};
use crate::store::{NewDeadLetter, Store};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest pause between attempts, and between tries to keep a dead letter.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the client commits the offsets stored after handling.
const COMMIT_INTERVAL_MS: &str = "1000";
/// How often librdkafka reports the lag of each partition.
const STATS_INTERVAL_MS: &str = "5000";
/// Longest error text kept with a dead letter.
const MAX_ERROR_CHARS: usize = 2000;

/// The consumer workers of a node: one task per handler.
pub struct Workers {
    pub store: Arc<dyn Store>,
    pub settings: KafkaSettings,
    pub handlers: Handlers,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Workers {
    /// Starts every handler's consumer; each runs until `stop` fires.
    pub async fn start(self, stop: watch::Receiver<bool>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let dlq: FutureProducer = self.settings.client_config().create()?;
        let mut tasks = Vec::new();
        for handler in self.handlers.all() {
            let worker = Worker {
                handler: handler.clone(),
                group: format!("{}{}", self.settings.prefix, handler.name()),
                dlq: dlq.clone(),
                store: self.store.clone(),
                settings: self.settings.clone(),
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
                max_attempts: self.max_attempts,
                backoff: self.backoff,
            };
            tasks.push(tokio::spawn(worker.run(stop.clone())));
        }
        Ok(tasks)
    }
}

/// Reports each partition's lag from librdkafka's statistics.
struct LagContext {
    group: String,
    metrics: Arc<Metrics>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        // Up while the client has a connection to a broker of the cluster (node ids of
        // bootstrap entries are -1).
        let up = statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.metrics
            .dependency_up
            .get_or_create(&DependencyLabels {
                dependency: "broker",
            })
            .set(i64::from(up));
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 is librdkafka's "internal" partition, and a lag it does not know yet.
                if partition >= 0 && p.consumer_lag >= 0 {
                    let labels = PartitionLabels {
                        group: self.group.clone(),
                        topic: topic.clone(),
                        partition,
                    };
                    self.metrics
                        .consumer_lag
                        .get_or_create(&labels)
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// One handler's consumer.
struct Worker {
    handler: Arc<dyn Handler>,
    group: String,
    dlq: FutureProducer,
    store: Arc<dyn Store>,
    settings: KafkaSettings,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    backoff: Duration,
}

/// What became of a message.
enum Handled {
    Done,
    /// Stopping mid-way: the offset stays, and the message comes again.
    Stopped,
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut pause = self.backoff;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.consume(&mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(handler = self.handler.name(), error = %e, "consumer failed; starting again");
                    if sleep_or_stop(pause, &mut stop).await {
                        return;
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Subscribes, then handles messages one at a time until `stop` fires.
    async fn consume(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let aggregates = self.handler.aggregates();
        self.settings.ensure_topics(aggregates).await?;
        let consumer = self.subscribe(aggregates)?;
        loop {
            let message = tokio::select! {
                received = consumer.recv() => received?.detach(),
                _ = stop.changed() => return Ok(()),
            };
            match self.handle(&message, stop).await {
                // librdkafka stores `offset + 1`: the next message to read.
                Handled::Done => {
                    consumer.store_offset(message.topic(), message.partition(), message.offset())?
                }
                Handled::Stopped => return Ok(()),
            }
        }
    }

    fn subscribe(&self, aggregates: &[&str]) -> anyhow::Result<StreamConsumer<LagContext>> {
        let topics: Vec<String> = aggregates.iter().map(|a| self.settings.topic(a)).collect();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let context = LagContext {
            group: self.group.clone(),
            metrics: self.metrics.clone(),
        };
        let consumer: StreamConsumer<LagContext> = self
            .settings
            .client_config()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", STATS_INTERVAL_MS)
            .create_with_context(context)?;
        consumer.subscribe(&names)?;
        tracing::info!(group = %self.group, ?topics, "consumer subscribed");
        Ok(consumer)
    }

    /// Handles one message: skipped when the handler does not want its type, else tried
    /// up to `max_attempts` times, then dead-lettered.
    async fn handle(&self, message: &OwnedMessage, stop: &mut watch::Receiver<bool>) -> Handled {
        let name = self.handler.name();
        let labels = HandlerLabels {
            handler: name.to_owned(),
        };
        // A type the handler does not want is passed over unparsed.
        if header(message, EVENT_TYPE_HEADER).is_some_and(|t| !self.handler.wants(&t)) {
            return Handled::Done;
        }
        let bytes = message.payload().unwrap_or_default();
        let event = match EventMessage::parse(bytes).and_then(EventMessage::into_event) {
            Ok(event) => event,
            Err(invalid) => {
                return self
                    .dead_letter(
                        message,
                        None,
                        &invalid.to_string(),
                        (1, self.clock.now()),
                        stop,
                    )
                    .await
            }
        };
        if !self.handler.wants(&event.event_type) {
            return Handled::Done;
        }
        let mut pause = self.backoff;
        let mut first_failed_at = None;
        for attempt in 1..=self.max_attempts {
            match self.handler.handle(&event).await {
                Ok(()) => {
                    self.metrics.consumer_processed.get_or_create(&labels).inc();
                    return Handled::Done;
                }
                Err(e) => {
                    self.metrics.consumer_failed.get_or_create(&labels).inc();
                    let first_failed_at = *first_failed_at.get_or_insert(self.clock.now());
                    tracing::warn!(handler = name, event_id = event.id, attempt, error = %e, "handler failed");
                    if attempt == self.max_attempts {
                        let error = format!("{e:#}");
                        return self
                            .dead_letter(
                                message,
                                Some(event.id),
                                &error,
                                (attempt, first_failed_at),
                                stop,
                            )
                            .await;
                    }
                    if sleep_or_stop(pause, stop).await {
                        return Handled::Stopped;
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
        Handled::Done
    }

    /// Keeps the message as a dead letter (retrying until the database takes it), copies
    /// it to the dead-letter topic, and lets the partition move on.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        event_id: Option<i64>,
        error: &str,
        (attempts, first_failed_at): (u32, Timestamp),
        stop: &mut watch::Receiver<bool>,
    ) -> Handled {
        let name = self.handler.name();
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let letter = NewDeadLetter {
            handler: name.to_owned(),
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: key.clone(),
            message: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            event_id: event_id.or_else(|| header(message, EVENT_ID_HEADER)?.parse().ok()),
            error: error.chars().take(MAX_ERROR_CHARS).collect(),
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            first_failed_at,
        };
        let mut pause = self.backoff;
        loop {
            match self
                .store
                .insert_dead_letter(&letter, self.clock.now())
                .await
            {
                Ok(kept) => {
                    tracing::error!(handler = name, dead_letter = kept.id, topic = %letter.topic, offset = letter.offset, error = %letter.error, "message dead-lettered");
                    break;
                }
                Err(e) => {
                    tracing::warn!(handler = name, error = %e, "could not keep a dead letter; trying again");
                    if sleep_or_stop(pause, stop).await {
                        return Handled::Stopped;
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
        let labels = HandlerLabels {
            handler: name.to_owned(),
        };
        self.metrics
            .consumer_dead_lettered
            .get_or_create(&labels)
            .inc();
        self.copy_to_dlq(message, &letter).await;
        Handled::Done
    }

    /// The copy on `{prefix}dlq`, for other systems to see; the row is the record, so a
    /// failure here is only logged.
    async fn copy_to_dlq(&self, message: &OwnedMessage, letter: &NewDeadLetter) {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        for (key, value) in [
            ("dlq-handler", letter.handler.as_str()),
            ("dlq-topic", letter.topic.as_str()),
            ("dlq-partition", partition.as_str()),
            ("dlq-offset", offset.as_str()),
            ("dlq-error", letter.error.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let topic = self.settings.topic(DLQ_TOPIC);
        let payload = message.payload().unwrap_or_default();
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Err((e, _)) = self.dlq.send(record, Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "could not copy a dead letter to the dead-letter topic");
        }
    }
}

/// A header's value as text.
fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sleeps for `pause`; `true` when `stop` fired first.
async fn sleep_or_stop(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stop.changed() => true,
    }
}
