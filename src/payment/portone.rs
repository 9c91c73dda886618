//! The PortOne V2 gateway: its REST API (`GET /payments/{paymentId}`, `POST
//! /payments/{paymentId}/cancel`), authenticated with `Authorization: PortOne <API secret>`.
//! One HTTPS client per node, with a per-request timeout; response bodies are read up to a
//! bound. The API secret never reaches a log or an error message.

use super::{GatewayError, GatewayPayment, PaymentGateway};
use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Largest response body read from PortOne: a payment is a few kilobytes of JSON.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Characters of an error body kept in a gateway error (for logs; never sent to clients).
const ERROR_BODY_CHARS: usize = 300;
const STATUS_PAID: &str = "PAID";

/// What the gateway needs from configuration.
#[derive(Clone)]
pub struct PortOneSettings {
    /// `https://api.portone.io`, or a stub in tests.
    pub api_url: String,
    /// The V2 API secret: only in the `Authorization` header.
    pub api_secret: String,
    /// Our store: a payment of another store is "not found" to us.
    pub store_id: String,
    /// Longest wait for one request, connection included.
    pub timeout: Duration,
}

/// The secret stays out of `Debug`.
impl fmt::Debug for PortOneSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortOneSettings")
            .field("api_url", &self.api_url)
            .field("api_secret", &"<redacted>")
            .field("store_id", &self.store_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct PortOneGateway {
    client: reqwest::Client,
    base: Url,
    authorization: String,
    store_id: String,
}

impl PortOneGateway {
    /// Fails on an API URL that cannot carry a path, or a client that cannot be built.
    pub fn new(settings: &PortOneSettings) -> Result<PortOneGateway, String> {
        let base = Url::parse(&settings.api_url)
            .map_err(|e| format!("portone_api_url: {e}"))
            .and_then(|url| match url.cannot_be_a_base() {
                true => Err("portone_api_url: must be an http(s) URL".to_owned()),
                false => Ok(url),
            })?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("building the PortOne HTTP client: {e}"))?;
        Ok(PortOneGateway {
            client,
            base,
            authorization: format!("PortOne {}", settings.api_secret),
            store_id: settings.store_id.clone(),
        })
    }

    /// `{api}/payments/{payment_id}[/cancel]`, the id percent-encoded as one path segment.
    fn payment_url(&self, payment_id: &str, cancel: bool) -> Result<Url, GatewayError> {
        if payment_id.is_empty() || payment_id == "." || payment_id == ".." {
            return Err(GatewayError::Rejected("not a payment id".into()));
        }
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| GatewayError::Rejected("API URL cannot carry a path".into()))?;
            segments.pop_if_empty().extend(["payments", payment_id]);
            if cancel {
                segments.push("cancel");
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), GatewayError> {
        let mut response = request
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(GatewayError::Unavailable(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// A request that got no complete answer. `reqwest`'s message names the URL, never the
/// headers, so the secret cannot appear in it.
fn transport(e: reqwest::Error) -> GatewayError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    GatewayError::Unavailable(format!("{what}: {}", e.without_url()))
}

/// A status that is not success: 5xx, 408 and 429 are the gateway's trouble (transient);
/// any other 4xx refused our request.
fn refusal(status: StatusCode, body: &[u8]) -> GatewayError {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    let message = format!("HTTP {}: {text}", status.as_u16());
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        GatewayError::Unavailable(message)
    } else {
        GatewayError::Rejected(message)
    }
}

/// The fields of PortOne's `Payment` that matter here; every status shares them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentBody {
    status: String,
    store_id: Option<String>,
    amount: Option<AmountBody>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct AmountBody {
    total: i64,
}

/// PortOne's error body: `{"type": "PAYMENT_ALREADY_CANCELLED", "message": …}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl PaymentBody {
    fn into_payment(self, our_store: &str) -> Result<GatewayPayment, GatewayError> {
        if self.store_id.as_deref().is_some_and(|s| s != our_store) {
            // Another store's payment is none of ours: as if it did not exist.
            return Ok(GatewayPayment::NotFound);
        }
        if self.status != STATUS_PAID {
            return Ok(GatewayPayment::NotPaid {
                status: self.status,
            });
        }
        match (self.amount, self.currency) {
            (Some(amount), Some(currency)) => Ok(GatewayPayment::Paid {
                amount: amount.total,
                currency,
            }),
            _ => Err(GatewayError::Unavailable(
                "a PAID payment without amount or currency".into(),
            )),
        }
    }
}

#[async_trait]
impl PaymentGateway for PortOneGateway {
    fn name(&self) -> &'static str {
        "portone"
    }

    /// `expected_amount` is not sent: PortOne reports what it captured.
    async fn payment(
        &self,
        payment_id: &str,
        _expected_amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        let url = self.payment_url(payment_id, false)?;
        let (status, body) = self.send(self.client.get(url)).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(GatewayPayment::NotFound);
        }
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let payment: PaymentBody = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::Unavailable(format!("unreadable payment: {e}")))?;
        payment.into_payment(&self.store_id)
    }

    /// A payment already cancelled in full counts as cancelled: a retried refund whose
    /// first attempt went through (but whose answer was lost) must not fail forever.
    async fn cancel(
        &self,
        payment_id: &str,
        amount: Option<i64>,
        reason: &str,
    ) -> Result<(), GatewayError> {
        let url = self.payment_url(payment_id, true)?;
        let mut body = serde_json::json!({ "reason": reason, "storeId": self.store_id });
        if let Some(amount) = amount {
            body["amount"] = amount.into();
        }
        let (status, reply) = self.send(self.client.post(url).json(&body)).await?;
        if status.is_success() {
            return Ok(());
        }
        let already = serde_json::from_slice::<ErrorBody>(&reply)
            .ok()
            .and_then(|e| e.kind)
            .is_some_and(|kind| kind == "PAYMENT_ALREADY_CANCELLED");
        if status == StatusCode::CONFLICT && already {
            tracing::warn!(payment_id, "payment already cancelled at PortOne");
            return Ok(());
        }
        Err(refusal(status, &reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(api_url: &str) -> PortOneGateway {
        PortOneGateway::new(&PortOneSettings {
            api_url: api_url.into(),
            api_secret: "s3cret".into(),
            store_id: "store-1".into(),
            timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn payment_ids_are_one_encoded_path_segment() {
        let g = gateway("https://api.portone.io");
        assert_eq!(
            g.payment_url("pay_1", false).unwrap().as_str(),
            "https://api.portone.io/payments/pay_1"
        );
        assert_eq!(
            g.payment_url("a/b?c#d e", true).unwrap().as_str(),
            "https://api.portone.io/payments/a%2Fb%3Fc%23d%20e/cancel"
        );
        let g = gateway("http://127.0.0.1:9/v2/");
        assert_eq!(
            g.payment_url("x", false).unwrap().as_str(),
            "http://127.0.0.1:9/v2/payments/x"
        );
        for bad in ["", ".", ".."] {
            assert!(matches!(
                g.payment_url(bad, false),
                Err(GatewayError::Rejected(_))
            ));
        }
    }

    #[test]
    fn the_secret_is_not_in_debug() {
        let settings = PortOneSettings {
            api_url: "https://api.portone.io".into(),
            api_secret: "s3cret".into(),
            store_id: "store-1".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    fn body(json: &str) -> PaymentBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn payments_are_read_by_status_store_amount_and_currency() {
        let paid = r#"{"status":"PAID","id":"p","storeId":"store-1","amount":{"total":3000,"paid":3000},"currency":"KRW"}"#;
        assert_eq!(
            body(paid).into_payment("store-1").unwrap(),
            GatewayPayment::Paid {
                amount: 3000,
                currency: "KRW".into()
            }
        );
        assert_eq!(
            body(paid).into_payment("store-2").unwrap(),
            GatewayPayment::NotFound
        );
        let ready = r#"{"status":"READY","amount":{"total":3000},"currency":"KRW"}"#;
        assert_eq!(
            body(ready).into_payment("store-1").unwrap(),
            GatewayPayment::NotPaid {
                status: "READY".into()
            }
        );
        let broken = r#"{"status":"PAID","storeId":"store-1"}"#;
        assert!(matches!(
            body(broken).into_payment("store-1"),
            Err(GatewayError::Unavailable(_))
        ));
    }

    #[test]
    fn refusals_are_transient_only_for_the_gateways_trouble() {
        for (code, transient) in [
            (500, true),
            (503, true),
            (408, true),
            (429, true),
            (400, false),
            (401, false),
            (403, false),
            (409, false),
        ] {
            let e = refusal(StatusCode::from_u16(code).unwrap(), b"{}");
            assert_eq!(
                matches!(e, GatewayError::Unavailable(_)),
                transient,
                "{code}"
            );
        }
    }
}
