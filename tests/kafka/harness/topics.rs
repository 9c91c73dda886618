//! Kafka as the tests see it, through a plain client (rdkafka): reading topics back,
//! producing forged or repeated messages, and a consumer group's committed offsets.
//!
//! The reader never asks the broker how much there is (Tansu's high watermarks are wrong
//! after a multi-record batch, DESIGN §6): it reads every partition from the beginning and
//! keeps what arrives until the caller's condition holds or a deadline passes. It assigns
//! the partitions itself rather than joining a group, so no rebalance delays it, and it
//! waits for a topic to exist rather than creating it with the broker's default partitions.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use crate::helpers::unique;

/// Longest wait for one metadata or offset request to a live broker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One message as read from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Option<String>)>,
}

impl Received {
    /// The value's `id`, when it is a JSON object with an integer id (an event).
    pub fn event_id(&self) -> Option<i64> {
        serde_json::from_slice::<Value>(&self.value)
            .ok()
            .and_then(|v| v["id"].as_i64())
    }

    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<Option<&str>> {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_deref())
            .collect()
    }

    /// `topic[partition]@offset`, for messages.
    pub fn place(&self) -> String {
        format!("{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // A short-lived client needs no long back-offs when the broker is slow to answer.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// A consumer of group `group` that never joins it: the settings DESIGN §6 asks of every
/// consumer against Tansu, no auto-commit, and no topic creation by asking about one.
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("allow.auto.create.topics", "false");
    config
}

/// The partitions of `topic`, once it exists (created by the relay, never by this client),
/// or a failure after `within`.
fn wait_for_topic(consumer: &BaseConsumer, topic: &str, within: Duration) -> Vec<i32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let last = match consumer.fetch_metadata(None, REQUEST_TIMEOUT) {
            Ok(metadata) => {
                if let Some(found) = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                {
                    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
                    if !partitions.is_empty() {
                        return partitions;
                    }
                }
                let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
                format!("topics: {names:?}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} did not appear within {within:?} ({last})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads topics from their beginning and keeps every message.
pub struct TopicReader {
    consumer: StreamConsumer,
    topics: Vec<String>,
    received: Vec<Received>,
}

impl TopicReader {
    /// Waits (up to `within`) for each topic to exist, then reads all their partitions
    /// from the start.
    pub async fn open(bootstrap: &str, topics: &[String], within: Duration) -> TopicReader {
        let consumer: StreamConsumer = consumer_config(bootstrap, &unique("reader"))
            .create()
            .expect("create the topic reader");
        let mut assignment = TopicPartitionList::new();
        let bootstrap = bootstrap.to_owned();
        let wanted = topics.to_vec();
        // librdkafka's metadata call blocks its thread.
        let partitions = tokio::task::spawn_blocking(move || {
            let probe: BaseConsumer = consumer_config(&bootstrap, &unique("probe"))
                .create()
                .expect("create a metadata client");
            wanted
                .iter()
                .map(|topic| (topic.clone(), wait_for_topic(&probe, topic, within)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        for (topic, ids) in &partitions {
            for &partition in ids {
                assignment
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .expect("add a partition to the assignment");
            }
        }
        consumer
            .assign(&assignment)
            .expect("assign the topics' partitions");
        TopicReader {
            consumer,
            topics: topics.to_vec(),
            received: Vec::new(),
        }
    }

    /// Reads until `done(everything received so far)` holds; fails after `within`, with
    /// `what` and `progress(everything received)` in the message.
    pub async fn read_until(
        &mut self,
        within: Duration,
        what: &str,
        mut done: impl FnMut(&[Received]) -> bool,
        progress: impl Fn(&[Received]) -> String,
    ) {
        let deadline = Instant::now() + within;
        while !done(&self.received) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out after {within:?} reading {:?} for {what}: {} messages read; {}",
                self.topics,
                self.received.len(),
                progress(&self.received)
            );
            let wait = (deadline - now).min(Duration::from_millis(250));
            if let Ok(message) = tokio::time::timeout(wait, self.consumer.recv()).await {
                let message = message.expect("reading a topic");
                self.received.push(received(&message));
            }
        }
    }

    /// Everything read so far, in the order it arrived (per partition: offset order).
    pub fn received(&self) -> &[Received] {
        &self.received
    }
}

fn received<M: Message>(message: &M) -> Received {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(text)))
                .collect()
        })
        .unwrap_or_default();
    Received {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(text),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

/// A producer of the test's own, as any other system of the company would write to a
/// topic: idempotent, `acks=all`.
pub struct TestProducer(FutureProducer);

impl TestProducer {
    pub fn new(bootstrap: &str) -> TestProducer {
        let producer = client_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .expect("create the test producer");
        TestProducer(producer)
    }

    /// Produces one message and waits for the broker's ack; returns (partition, offset).
    pub async fn produce(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(String, Option<String>)],
    ) -> (i32, i64) {
        self.produce_to(topic, None, key, value, headers).await
    }

    /// [`produce`](Self::produce) to `partition` when given, else where the key hashes.
    pub async fn produce_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: &[u8],
        headers: &[(String, Option<String>)],
    ) -> (i32, i64) {
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(owned);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let delivery = self
            .0
            .send(record, REQUEST_TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
        (delivery.partition, delivery.offset)
    }
}

/// The offset group `group` has committed on `topic[partition]` (the next one it will
/// read), if any. Asks the group's coordinator without joining the group.
pub async fn committed_offset(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_config(&bootstrap, &group)
            .create()
            .expect("create an offsets client");
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, partition);
        let committed = consumer.committed_offsets(wanted, REQUEST_TIMEOUT).ok()?;
        let element = committed.find_partition(&topic, partition)?;
        match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Messages per topic, for progress and failure messages.
pub fn count_by_topic(received: &[Received]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for message in received {
        *counts.entry(message.topic.as_str()).or_insert(0) += 1;
    }
    counts
}
