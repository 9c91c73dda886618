//! Server-Sent Events: subscribing to an order's stream and reading its `data:` payloads.

use crate::helpers::TestApp;
use serde_json::Value;
use std::time::Duration;

impl TestApp {
    /// Opens `GET /orders/{id}/events`; returns the raw response so callers can check the
    /// status before reading events.
    pub async fn subscribe(&self, token: &str, order_id: i64) -> reqwest::Response {
        self.client
            .get(self.api(&format!("/orders/{order_id}/events")))
            .bearer_auth(token)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .expect("subscribe to order events")
    }
}

/// Reads `data:` payloads of an event stream, skipping comments and keep-alives.
pub struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event's data as JSON, or a failure after `within`.
    pub async fn next_event(&mut self, within: Duration) -> Value {
        self.next_named_event(within).await.1
    }

    /// The next event's name (its `event:` line, `message` without one) and data as JSON,
    /// or a failure after `within`.
    pub async fn next_named_event(&mut self, within: Duration) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.take_event() {
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {within:?}"))
                .expect("reading the event stream")
                .expect("the event stream ended");
            // CR is only ever part of a CRLF line ending here; dropping it leaves LF lines.
            self.buffer
                .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        }
    }

    fn take_event(&mut self) -> Option<(String, Value)> {
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("SSE is UTF-8");
            let name = block
                .lines()
                .find_map(|line| line.strip_prefix("event:"))
                .map_or("message", str::trim)
                .to_owned();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let joined = data.join("\n");
            let value = serde_json::from_str(&joined)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {joined}"));
            return Some((name, value));
        }
        None
    }
}
