//! The outbox as PostgreSQL holds it, and the checks that the topics carry it: every event
//! on its topic with its key, headers and value, in order per key.

use super::topics::{count_by_topic, Received, TopicReader};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// The topic prefix the nodes run with (the default).
pub const PREFIX: &str = "stampede.";

/// A row of the `outbox` table.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: i64,
    pub aggregate_type: String,
    pub aggregate_id: i64,
    pub event_type: String,
    pub payload: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl OutboxEvent {
    pub fn topic(&self) -> String {
        format!("{PREFIX}{}", self.aggregate_type)
    }

    /// What went wrong when `message` is not this event as DESIGN §4 and issue 9 describe
    /// it: on the aggregate's topic, the aggregate id as key, headers `event-id` and
    /// `event-type`, and a value of exactly `{id, type, aggregate_type, aggregate_id,
    /// payload, created_at}` equal to the row.
    pub fn mismatch(&self, message: &Received) -> Option<String> {
        let mut wrong = Vec::new();
        if message.topic != self.topic() {
            wrong.push(format!(
                "topic {} (expected {})",
                message.topic,
                self.topic()
            ));
        }
        let key = self.aggregate_id.to_string();
        if message.key.as_deref() != Some(key.as_str()) {
            wrong.push(format!("key {:?} (expected {key:?})", message.key));
        }
        let id = self.id.to_string();
        if message.header_values("event-id") != [Some(id.as_str())] {
            wrong.push(format!(
                "event-id headers {:?} (expected [{id:?}])",
                message.header_values("event-id")
            ));
        }
        if message.header_values("event-type") != [Some(self.event_type.as_str())] {
            wrong.push(format!(
                "event-type headers {:?} (expected [{:?}])",
                message.header_values("event-type"),
                self.event_type
            ));
        }
        wrong.extend(self.value_mismatch(message));
        (!wrong.is_empty()).then(|| {
            format!(
                "{} is not outbox event {self:?}: {}; value {}",
                message.place(),
                wrong.join("; "),
                String::from_utf8_lossy(&message.value)
            )
        })
    }

    fn value_mismatch(&self, message: &Received) -> Vec<String> {
        let Ok(value) = serde_json::from_slice::<Value>(&message.value) else {
            return vec!["the value is not JSON".to_owned()];
        };
        let Some(object) = value.as_object() else {
            return vec!["the value is not a JSON object".to_owned()];
        };
        let mut wrong = Vec::new();
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort_unstable();
        let expected_fields = [
            "aggregate_id",
            "aggregate_type",
            "created_at",
            "id",
            "payload",
            "type",
        ];
        if fields != expected_fields {
            wrong.push(format!("fields {fields:?} (expected {expected_fields:?})"));
        }
        let expected = [
            ("id", Value::from(self.id)),
            ("type", Value::from(self.event_type.clone())),
            ("aggregate_type", Value::from(self.aggregate_type.clone())),
            ("aggregate_id", Value::from(self.aggregate_id)),
            // A payload the outbox holds as JSON travels as that JSON.
            (
                "payload",
                serde_json::from_str(&self.payload)
                    .unwrap_or_else(|_| Value::from(self.payload.clone())),
            ),
        ];
        for (field, want) in expected {
            if value[field] != want {
                wrong.push(format!("{field} {} (expected {want})", value[field]));
            }
        }
        match value["created_at"].as_str().map(rfc3339_millis) {
            Some(Some(millis)) if millis == self.created_at => {}
            _ => wrong.push(format!(
                "created_at {} (expected the instant {} ms)",
                value["created_at"], self.created_at
            )),
        }
        wrong
    }
}

/// Unix milliseconds of an RFC 3339 time, when it is one on a whole millisecond.
fn rfc3339_millis(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = time.unix_timestamp_nanos();
    (nanos % 1_000_000 == 0).then(|| i64::try_from(nanos / 1_000_000).ok())?
}

/// Every outbox row, in id order.
pub async fn outbox_events(database_url: &str) -> Vec<OutboxEvent> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect to the test database");
    let rows = sqlx::query(
        "SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at
         FROM outbox ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the outbox");
    let _ = conn.close().await;
    rows.iter()
        .map(|row| OutboxEvent {
            id: row.get("id"),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            event_type: row.get("event_type"),
            payload: row.get("payload"),
            created_at: row.get("created_at"),
        })
        .collect()
}

/// The topics `events` belong on, sorted.
pub fn topics_of(events: &[OutboxEvent]) -> Vec<String> {
    let topics: std::collections::BTreeSet<String> =
        events.iter().map(OutboxEvent::topic).collect();
    topics.into_iter().collect()
}

/// Reads the topics of `events` until each event has arrived on its topic (with the
/// event's id in its value), or fails after `within` naming what is missing.
pub async fn read_until_published(
    bootstrap: &str,
    events: &[OutboxEvent],
    within: Duration,
) -> Vec<Received> {
    let wanted: HashSet<(String, i64)> = events.iter().map(|e| (e.topic(), e.id)).collect();
    let mut reader = TopicReader::open(bootstrap, &topics_of(events), within).await;
    let arrived = |received: &[Received]| -> HashSet<(String, i64)> {
        received
            .iter()
            .filter_map(|m| Some((m.topic.clone(), m.event_id()?)))
            .filter(|pair| wanted.contains(pair))
            .collect()
    };
    let what = format!("the {} outbox events", events.len());
    // Looks at each message once: thousands of them, parsed again on every arrival, would
    // take longer than the relay does.
    let mut seen = HashSet::new();
    let mut looked_at = 0;
    reader
        .read_until(
            within,
            &what,
            |received| {
                seen.extend(arrived(&received[looked_at..]));
                looked_at = received.len();
                seen.len() == wanted.len()
            },
            |received| {
                let seen = arrived(received);
                let missing: Vec<i64> = events
                    .iter()
                    .filter(|e| !seen.contains(&(e.topic(), e.id)))
                    .map(|e| e.id)
                    .collect();
                format!(
                    "{} of {} events missing, first {:?}; read per topic {:?}",
                    missing.len(),
                    events.len(),
                    &missing[..missing.len().min(20)],
                    count_by_topic(received)
                )
            },
        )
        .await;
    reader.received().to_vec()
}

/// Where an event was found: (partition, offset, event id).
type Placed = (i32, i64, i64);

/// What the topics must show in every test: each message that carries an outbox event is
/// that event exactly (topic, key, headers, value), and no message claims an id the outbox
/// does not have. Messages of events written after `events` was read (higher ids) are left
/// out. Returns, per (topic, key), the ids in offset order, after checking each key stays
/// on one partition.
fn checked_sequences(
    events: &[OutboxEvent],
    received: &[Received],
) -> BTreeMap<(String, String), Vec<i64>> {
    let by_id: HashMap<i64, &OutboxEvent> = events.iter().map(|e| (e.id, e)).collect();
    let last = events.iter().map(|e| e.id).max().unwrap_or(0);
    // (partition, offset, event id) per (topic, key)
    let mut per_key: BTreeMap<(String, String), Vec<Placed>> = BTreeMap::new();
    for message in received {
        let Some(id) = message.event_id() else {
            panic!(
                "{} carries no event id: {}",
                message.place(),
                String::from_utf8_lossy(&message.value)
            );
        };
        if id > last {
            continue;
        }
        let event = by_id.get(&id).unwrap_or_else(|| {
            panic!(
                "{} carries event id {id}, which is not in the outbox",
                message.place()
            )
        });
        if let Some(problem) = event.mismatch(message) {
            panic!("{problem}");
        }
        per_key
            .entry((
                message.topic.clone(),
                message.key.clone().unwrap_or_default(),
            ))
            .or_default()
            .push((message.partition, message.offset, id));
    }
    per_key
        .into_iter()
        .map(|(key, mut messages)| {
            let partitions: HashSet<i32> = messages.iter().map(|m| m.0).collect();
            assert_eq!(
                partitions.len(),
                1,
                "key {key:?} is on several partitions {partitions:?}: its events cannot stay in order"
            );
            messages.sort_by_key(|m| m.1);
            (key, messages.into_iter().map(|m| m.2).collect())
        })
        .collect()
}

/// Per (topic, key), the outbox ids in outbox order.
fn outbox_sequences(events: &[OutboxEvent]) -> BTreeMap<(String, String), Vec<i64>> {
    let mut per_key: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for event in events {
        per_key
            .entry((event.topic(), event.aggregate_id.to_string()))
            .or_default()
            .push(event.id);
    }
    per_key
}

/// Every event of `events` is on its topic exactly once, and per key in outbox order.
pub fn assert_published_exactly_once(events: &[OutboxEvent], received: &[Received]) {
    let published = checked_sequences(events, received);
    let expected = outbox_sequences(events);
    for (key, ids) in &expected {
        let got = published.get(key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            got,
            ids.as_slice(),
            "key {key:?}: the topic's ids (offset order) differ from the outbox's"
        );
    }
}

/// Every event of `events` is on its topic, and per key the first time each event appears
/// follows outbox order; an event may appear again later (a relay that took over
/// republishes what its predecessor had sent but not recorded: consumers dedupe by event
/// id). Returns how many messages were such repeats.
pub fn assert_published_none_lost(events: &[OutboxEvent], received: &[Received]) -> usize {
    let published = checked_sequences(events, received);
    let expected = outbox_sequences(events);
    let mut repeats = 0;
    for (key, ids) in &expected {
        let got = published.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut seen = HashSet::new();
        let firsts: Vec<i64> = got.iter().copied().filter(|id| seen.insert(*id)).collect();
        repeats += got.len() - firsts.len();
        assert_eq!(
            firsts, *ids,
            "key {key:?}: first appearances on the topic (offset order) differ from the \
             outbox's order; all appearances: {got:?}"
        );
    }
    repeats
}
