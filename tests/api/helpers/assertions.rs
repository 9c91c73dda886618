//! Reading replies: insist on a status or an error code, and pull typed fields out of JSON
//! with a message that shows the whole value when one is missing.

use crate::helpers::Reply;
use serde_json::Value;

/// Insists on `status`; returns the body.
#[track_caller]
pub fn expect(reply: &Reply, status: u16) -> &Value {
    assert_eq!(
        reply.0.as_u16(),
        status,
        "expected HTTP {status}, got {} with body {}",
        reply.0,
        reply.1
    );
    &reply.1
}

/// Insists on `status` and the documented error body `{"error":{"code","message"}}`.
#[track_caller]
pub fn expect_error(reply: &Reply, status: u16, code: &str) {
    let body = expect(reply, status);
    assert_eq!(
        body["error"]["code"], code,
        "wrong error code (HTTP {status}): {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

#[track_caller]
pub fn int(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .unwrap_or_else(|| panic!("`{key}` is not an integer in {value}"))
}

#[track_caller]
pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}

#[track_caller]
pub fn array<'a>(value: &'a Value, key: &str) -> &'a Vec<Value> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array in {value}"))
}

#[track_caller]
pub fn parse_time(value: &Value, key: &str) -> time::OffsetDateTime {
    let raw = str_of(value, key);
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("`{key}` = {raw:?} is not RFC 3339 ({e}) in {value}"))
}
