//! Signed webhooks from the payment gateway: verification as [Standard Webhooks] specifies
//! it, and the reading of a PortOne V2 webhook body. Pure functions, no I/O: the route reads
//! the headers and the raw body, asks [`verify`] with the clock's `now`, and only then parses
//! the body with [`PortOneWebhook::parse`].
//!
//! The scheme: the secret is `whsec_` followed by the standard base64 of the HMAC key; the
//! signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; `webhook-signature` is a
//! space-separated list of `{version},{base64}` entries, of which a `v1` entry is the base64
//! of HMAC-SHA256 over the signed content. Several entries let the sender rotate its secret
//! without downtime; one matching `v1` entry is enough.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use crate::domain::Timestamp;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// How far `webhook-timestamp` may be from our clock, into the past (a replay) or the future
/// (a skewed sender), as the specification recommends. Checked in milliseconds against
/// `now`, so the edge is exact: 300 000 ms away is accepted, 300 001 ms is not.
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// `webhook-id` is our idempotency key, stored per delivery: bounded like any stored key.
/// A `.` is allowed, although the specification asks senders to avoid it (it blurs where the
/// id ends in the signed content): moving the split would need a fresh all-digit timestamp
/// and would push digits and a dot to the front of the body, which is then not JSON.
pub const MAX_ID_BYTES: usize = 255;
/// Unix seconds in decimal; 12 digits reach the year 33658, and keep the parse in `i64`.
pub const MAX_TIMESTAMP_DIGITS: usize = 12;
/// Entries in `webhook-signature`. A sender lists one per live secret (two while it rotates);
/// ten leaves room without letting a request make us decode an unbounded list.
pub const MAX_SIGNATURES: usize = 10;
/// The whole `webhook-signature` header: ten entries of the longest kind the specification
/// names (`v1a,` and an 88-character ed25519 signature) fit in 1 KiB.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;
/// Key length bounds from the specification: at least 24 bytes (192 bits), at most 64 bytes
/// (512 bits, one SHA-256 block; a longer HMAC key would only be hashed down).
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";
/// HMAC-SHA256 output, the length every `v1` signature must decode to.
const SIGNATURE_BYTES: usize = 32;
const REDACTED: &str = "<redacted>";

type HmacSha256 = Hmac<Sha256>;

/// The endpoint's signing secret, parsed from `whsec_…`. It holds the HMAC already keyed, so
/// the key bytes never leave this type; `Debug` and `Display` print `<redacted>`, as
/// `config::Secret` does.
#[derive(Clone)]
pub struct WebhookSecret {
    mac: HmacSha256,
}

/// Why a `whsec_…` value is refused. The messages never quote the value; each reads after
/// the setting's name (`portone_webhook_secret must start with whsec_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("must start with whsec_")]
    MissingPrefix,
    #[error("must be whsec_ followed by standard base64")]
    NotBase64,
    #[error("must decode to 24 to 64 bytes")]
    WrongLength,
}

impl WebhookSecretError {
    /// The message as a `&'static str`, for a config `Check` rule.
    pub fn requirement(self) -> &'static str {
        match self {
            WebhookSecretError::MissingPrefix => "must start with whsec_",
            WebhookSecretError::NotBase64 => "must be whsec_ followed by standard base64",
            WebhookSecretError::WrongLength => "must decode to 24 to 64 bytes",
        }
    }
}

impl WebhookSecret {
    pub fn parse(raw: &str) -> Result<WebhookSecret, WebhookSecretError> {
        let encoded = raw
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookSecretError::MissingPrefix)?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| WebhookSecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(WebhookSecretError::WrongLength);
        }
        // HMAC takes a key of any length, so this cannot fail; mapped rather than unwrapped.
        let mac = HmacSha256::new_from_slice(&key).map_err(|_| WebhookSecretError::WrongLength)?;
        Ok(WebhookSecret { mac })
    }

    /// HMAC-SHA256 over `{id}.{timestamp}.{body}`, with the timestamp exactly as sent.
    fn tag(&self, id: &str, timestamp: &str, body: &[u8]) -> CtOutput<HmacSha256> {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The three headers as received; `None` when absent or not text (the HTTP layer reads
/// them, `http::webhooks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why a delivery is refused. The route answers every one with 401 `invalid_signature`; the
/// variants are for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header is absent or empty.
    #[error("webhook header {0} is missing")]
    MissingHeader(&'static str),
    /// `webhook-id` is longer than [`MAX_ID_BYTES`] or holds other than visible ASCII.
    #[error("webhook-id is too long or not visible ASCII")]
    InvalidId,
    /// `webhook-timestamp` is not 1 to [`MAX_TIMESTAMP_DIGITS`] decimal digits.
    #[error("webhook-timestamp is not integer seconds")]
    InvalidTimestamp,
    /// `webhook-timestamp` is more than [`TOLERANCE_SECS`] away from now, either way.
    #[error("webhook-timestamp is more than {TOLERANCE_SECS} s away from now")]
    Stale,
    /// No `v1` entry matches, or the header is over its bounds.
    #[error("no webhook signature matches")]
    InvalidSignature,
}

/// Checks a delivery: all three headers present and within bounds, the timestamp within
/// [`TOLERANCE_SECS`] of `now`, and one `v1` entry of `webhook-signature` equal, compared in
/// constant time, to HMAC-SHA256 over `{id}.{timestamp}.{body}`. `body` must be the raw
/// bytes received, before any JSON parsing.
///
/// Replays inside the tolerance window pass this check; the caller makes each `webhook-id`
/// count once.
pub fn verify(
    secret: &WebhookSecret,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: Timestamp,
) -> Result<(), WebhookError> {
    let id = required(headers.id, ID_HEADER)?;
    let timestamp = required(headers.timestamp, TIMESTAMP_HEADER)?;
    let signature = required(headers.signature, SIGNATURE_HEADER)?;
    if id.len() > MAX_ID_BYTES || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookError::InvalidId);
    }
    check_fresh(parse_timestamp(timestamp)?, now)?;
    let expected = secret.tag(id, timestamp, body);
    // Every candidate is compared, in constant time each, so the time taken tells nothing
    // about which bytes of a forged signature were right.
    let matches = v1_signatures(signature)?
        .into_iter()
        .filter(|candidate| CtOutput::new((*candidate).into()) == expected)
        .count();
    if matches == 0 {
        return Err(WebhookError::InvalidSignature);
    }
    Ok(())
}

/// The `webhook-signature` entry for a delivery: `v1,` and the base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`. What a sender (the PortOne stub in the tests) puts in the header.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.tag(id, &timestamp.to_string(), body);
    format!("{SIGNATURE_VERSION},{}", BASE64.encode(tag.into_bytes()))
}

fn required<'a>(value: Option<&'a str>, header: &'static str) -> Result<&'a str, WebhookError> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(WebhookError::MissingHeader(header)),
    }
}

/// Digits only: no sign, no spaces, no fraction. The string itself, not this number, is what
/// was signed, so a sender's leading zeros still verify.
fn parse_timestamp(raw: &str) -> Result<i64, WebhookError> {
    if raw.len() > MAX_TIMESTAMP_DIGITS || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::InvalidTimestamp);
    }
    raw.parse().map_err(|_| WebhookError::InvalidTimestamp)
}

fn check_fresh(timestamp_secs: i64, now: Timestamp) -> Result<(), WebhookError> {
    // At most 12 digits, so the product stays far inside i64; saturating all the same.
    let sent_ms = timestamp_secs.saturating_mul(1000);
    let tolerance_ms = TOLERANCE_SECS.unsigned_abs() * 1000;
    if now.millis().abs_diff(sent_ms) > tolerance_ms {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// The decoded `v1` entries. Other versions (`v1a` for ed25519, future ones) are skipped, as
/// the specification asks; a `v1` entry that is not base64 of 32 bytes matches nothing.
fn v1_signatures(header: &str) -> Result<Vec<[u8; SIGNATURE_BYTES]>, WebhookError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(WebhookError::InvalidSignature);
    }
    let entries: Vec<&str> = header.split(' ').filter(|e| !e.is_empty()).collect();
    if entries.len() > MAX_SIGNATURES {
        return Err(WebhookError::InvalidSignature);
    }
    let decoded = entries
        .into_iter()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        .filter_map(|bytes| <[u8; SIGNATURE_BYTES]>::try_from(bytes.as_slice()).ok())
        .collect();
    Ok(decoded)
}

/// A PortOne V2 webhook body is at most this long; the documented shape is a few hundred
/// bytes.
pub const MAX_PORTONE_BODY_BYTES: usize = 64 * 1024;
/// `data.paymentId`: ours, chosen at checkout; bounded like any key we store.
pub const MAX_PAYMENT_ID_BYTES: usize = 255;
/// `data.storeId`: `store-` and a UUID (42 bytes) today; room for a longer form.
pub const MAX_STORE_ID_BYTES: usize = 128;
/// The event `type`, such as `Transaction.PartialCancelled`; kept as text for `Other`.
pub const MAX_EVENT_TYPE_BYTES: usize = 64;

/// What a PortOne V2 webhook announces. Only the payment id is trusted as a pointer: the
/// route asks the gateway (`GET /payments/{id}`) for the payment's real state before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOneWebhook {
    /// `Transaction.Paid`: a payment was approved.
    Paid {
        payment_id: String,
        store_id: String,
    },
    /// `Transaction.Cancelled`: a payment was cancelled in full.
    Cancelled {
        payment_id: String,
        store_id: String,
    },
    /// Any other type (`Transaction.Ready`, `Transaction.PartialCancelled`, `BillingKey.*`,
    /// types added later): acknowledged and ignored, its data not read.
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PortOneWebhookError {
    #[error("webhook body is over {MAX_PORTONE_BODY_BYTES} bytes")]
    TooLarge,
    #[error("webhook body is not a PortOne webhook: {0}")]
    Json(#[from] serde_json::Error),
    #[error("webhook field {0} is missing or empty")]
    MissingField(&'static str),
    #[error("webhook field {0} is too long")]
    TooLong(&'static str),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    /// Read only for the types we act on; the others may carry any shape.
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionData {
    #[serde(default)]
    payment_id: String,
    #[serde(default)]
    store_id: String,
}

impl PortOneWebhook {
    /// Parses the raw body: `{"type": …, "timestamp": …, "data": {"paymentId": …,
    /// "storeId": …, …}}`. The body's `timestamp` is the event's time and stays the same
    /// across retries, so it is not read: freshness is `webhook-timestamp`'s, checked by
    /// [`verify`].
    pub fn parse(body: &[u8]) -> Result<PortOneWebhook, PortOneWebhookError> {
        if body.len() > MAX_PORTONE_BODY_BYTES {
            return Err(PortOneWebhookError::TooLarge);
        }
        let envelope: Envelope = serde_json::from_slice(body)?;
        let kind = bounded(envelope.kind, "type", MAX_EVENT_TYPE_BYTES)?;
        let paid = match kind.as_str() {
            "Transaction.Paid" => true,
            "Transaction.Cancelled" => false,
            _ => return Ok(PortOneWebhook::Other(kind)),
        };
        if envelope.data.is_null() {
            return Err(PortOneWebhookError::MissingField("data"));
        }
        let data: TransactionData = serde_json::from_value(envelope.data)?;
        let payment_id = bounded(data.payment_id, "data.paymentId", MAX_PAYMENT_ID_BYTES)?;
        let store_id = bounded(data.store_id, "data.storeId", MAX_STORE_ID_BYTES)?;
        Ok(if paid {
            PortOneWebhook::Paid {
                payment_id,
                store_id,
            }
        } else {
            PortOneWebhook::Cancelled {
                payment_id,
                store_id,
            }
        })
    }
}

fn bounded(
    value: String,
    field: &'static str,
    max_bytes: usize,
) -> Result<String, PortOneWebhookError> {
    if value.is_empty() {
        return Err(PortOneWebhookError::MissingField(field));
    }
    if value.len() > max_bytes {
        return Err(PortOneWebhookError::TooLong(field));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
