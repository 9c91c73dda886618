//! An outbox event as it travels on Kafka (DESIGN §4): the key is the aggregate id as a
//! decimal string, so one aggregate's events share a partition and stay in order; the value
//! is JSON; the headers `event-id` and `event-type` let a consumer route or skip a message
//! without parsing it. The same shape is what a dead letter keeps and what a replay parses.

use crate::domain::events::Event;
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

/// Header with the outbox id.
pub const EVENT_ID_HEADER: &str = "event-id";
/// Header with the event type (`order.paid`).
pub const EVENT_TYPE_HEADER: &str = "event-type";
/// The aggregate type of the dead-letter topic (`stampede.dlq`).
pub const DLQ_TOPIC: &str = "dlq";
/// Largest message a consumer accepts; beyond it the message is invalid.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The JSON value of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMessage {
    pub id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: i64,
    pub payload: serde_json::Value,
    pub created_at: String,
}

/// Why a message is not an event this system wrote: a consumer dead-letters it at once.
#[derive(Debug, thiserror::Error)]
pub enum InvalidMessage {
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("not an event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an event: {0}")]
    Field(String),
}

impl EventMessage {
    /// The message for an outbox event. The payload was written as JSON by this system; one
    /// that does not parse is carried as a JSON string rather than lost.
    pub fn of(event: &Event) -> EventMessage {
        let payload = serde_json::from_str(&event.payload)
            .unwrap_or_else(|_| serde_json::Value::String(event.payload.clone()));
        EventMessage {
            id: event.id,
            event_type: event.event_type.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            payload,
            created_at: event.created_at.to_rfc3339(),
        }
    }

    /// Parses a message's value, refusing what no outbox event could have produced.
    pub fn parse(bytes: &[u8]) -> Result<EventMessage, InvalidMessage> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(InvalidMessage::TooLarge(bytes.len()));
        }
        let message: EventMessage = serde_json::from_slice(bytes)?;
        let named = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if message.id <= 0 || message.aggregate_id < 0 {
            return Err(InvalidMessage::Field("ids must be positive".into()));
        }
        if !named(&message.event_type) || !named(&message.aggregate_type) {
            return Err(InvalidMessage::Field("malformed type or aggregate".into()));
        }
        Timestamp::parse_rfc3339("created_at", &message.created_at)
            .map_err(|e| InvalidMessage::Field(e.to_string()))?;
        Ok(message)
    }

    /// The event back, as the handlers take it.
    pub fn into_event(self) -> Result<Event, InvalidMessage> {
        let created_at = Timestamp::parse_rfc3339("created_at", &self.created_at)
            .map_err(|e| InvalidMessage::Field(e.to_string()))?;
        Ok(Event {
            id: self.id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            event_type: self.event_type,
            payload: self.payload.to_string(),
            created_at,
        })
    }

    /// The JSON value.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The message key: the aggregate id in decimal.
    pub fn key(&self) -> String {
        self.aggregate_id.to_string()
    }
}

/// The topic of an aggregate type: `stampede.order`.
pub fn topic(prefix: &str, aggregate_type: &str) -> String {
    format!("{prefix}{aggregate_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: 42,
            aggregate_type: "order".into(),
            aggregate_id: 7,
            event_type: "order.paid".into(),
            payload: r#"{"order_id":7,"status":"paid"}"#.into(),
            created_at: Timestamp::from_millis(1_764_000_000_123),
        }
    }

    #[test]
    fn an_event_travels_and_comes_back_unchanged() {
        let message = EventMessage::of(&event());
        assert_eq!(message.key(), "7");
        let json: serde_json::Value = serde_json::from_slice(&message.to_json()).unwrap();
        assert_eq!(json["type"], "order.paid");
        assert_eq!(json["payload"]["status"], "paid");
        let back = EventMessage::parse(&message.to_json())
            .unwrap()
            .into_event()
            .unwrap();
        assert_eq!(back.id, 42);
        assert_eq!(back.created_at, event().created_at);
        let payload: serde_json::Value = serde_json::from_str(&back.payload).unwrap();
        assert_eq!(payload["order_id"], 7);
    }

    #[test]
    fn what_no_outbox_wrote_is_invalid() {
        let good = EventMessage::of(&event()).to_json();
        assert!(EventMessage::parse(&good).is_ok());
        let mut unknown_field: serde_json::Value = serde_json::from_slice(&good).unwrap();
        unknown_field["extra"] = 1.into();
        let mut bad_time: serde_json::Value = serde_json::from_slice(&good).unwrap();
        bad_time["created_at"] = "yesterday".into();
        let mut bad_type: serde_json::Value = serde_json::from_slice(&good).unwrap();
        bad_type["type"] = "order paid; drop".into();
        for bad in [
            b"not json".to_vec(),
            b"{}".to_vec(),
            serde_json::to_vec(&unknown_field).unwrap(),
            serde_json::to_vec(&bad_time).unwrap(),
            serde_json::to_vec(&bad_type).unwrap(),
            vec![b' '; MAX_MESSAGE_BYTES + 1],
        ] {
            assert!(EventMessage::parse(&bad).is_err());
        }
    }
}
