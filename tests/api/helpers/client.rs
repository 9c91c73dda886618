//! The client side: requests to a test's server and the replies, as `(status, JSON)`.

use crate::helpers::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A status and a parsed body (`Null` when empty, a JSON string when not JSON).
pub type Reply = (StatusCode, Value);

impl TestApp {
    /// `/orders` → `http://…/api/v1/orders`
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.root)
    }

    /// For paths outside `/api/v1` (ops endpoints).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.api(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        read_reply(response).await
    }

    /// The value of one sample line of `/metrics` (`name{labels}` as written), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.client.get(self.url("/metrics")).send().await;
        let text = text.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::POST, path, token, None, Some(body)).await
    }

    /// A POST without a body (logout, cancel).
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::POST, path, token, None, None).await
    }

    pub async fn post_idem(
        &self,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: &Value,
    ) -> Reply {
        self.send(Method::POST, path, token, Some(key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::PATCH, path, token, None, Some(body))
            .await
    }
}

pub async fn read_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let bytes = response.bytes().await.expect("read response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}
