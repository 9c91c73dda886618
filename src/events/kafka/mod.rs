//! The scale-out event path on Kafka (DESIGN §4), built with the `kafka` feature:
//!
//! - [`relay`]: one node at a time (a lease) publishes the outbox, in order, to a topic
//!   per aggregate type, and records how far the broker acknowledged;
//! - [`consumer`]: the workers — one consumer group per [`Handler`](super::Handler),
//!   retries with backoff, then a dead letter, and the partition moves on.
//!
//! Both speak to the broker through librdkafka (`rdkafka`); the clients are configured here.

pub mod consumer;
pub mod relay;

use crate::domain::events::AGGREGATES;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub use consumer::Workers;
pub use relay::Relay;

/// What the Kafka clients are built from (the wiring fills it from the configuration).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,…]`.
    pub brokers: String,
    /// Prepended to topics and group names (`stampede.`).
    pub prefix: String,
    /// Partitions of the topic of an aggregate type when it is created: those named, and
    /// the number for every other.
    pub partitions: Vec<(String, i32)>,
    pub other_partitions: i32,
}

impl KafkaSettings {
    pub fn topic(&self, aggregate_type: &str) -> String {
        super::message::topic(&self.prefix, aggregate_type)
    }

    fn partitions_of(&self, aggregate_type: &str) -> i32 {
        self.partitions
            .iter()
            .find(|(name, _)| name == aggregate_type)
            .map_or(self.other_partitions, |(_, count)| *count)
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    /// Creates the topics of these aggregate types that do not exist yet. A topic that
    /// exists is left as it is (its partitions are the operator's).
    pub async fn ensure_topics(&self, aggregate_types: &[&str]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let names: Vec<(String, i32)> = aggregate_types
            .iter()
            .map(|a| (self.topic(a), self.partitions_of(a)))
            .collect();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|(name, partitions)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(BROKER_DEFAULT))
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        for result in admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
            }
        }
        Ok(())
    }

    /// Every aggregate's topic and the dead-letter topic.
    pub async fn ensure_all_topics(&self) -> anyhow::Result<()> {
        let mut all: Vec<&str> = AGGREGATES.to_vec();
        all.push(super::message::DLQ_TOPIC);
        self.ensure_topics(&all).await
    }
}

/// The replication factor of created topics: the broker's default (`-1`, KIP-464).
const BROKER_DEFAULT: i32 = -1;
/// Longest wait for the broker to create topics.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
