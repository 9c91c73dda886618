//! Newtypes that check their bounds in their constructor. Every limit is named with its unit.

use super::DomainError;
use serde::{Deserialize, Serialize};

/// Largest amount of money a single price or order may carry: one trillion won. Keeps every
/// product of price and quantity far inside `i64`.
pub const MAX_WON: i64 = 1_000_000_000_000;
/// Largest quantity of one product in one order line or one inbound.
pub const MAX_QUANTITY: i64 = 1_000_000;
pub const MAX_EMAIL_BYTES: usize = 254;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 128;
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// An amount of money in whole won, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Won(i64);

impl Won {
    pub const ZERO: Won = Won(0);

    pub fn new(field: &'static str, value: i64) -> Result<Self, DomainError> {
        if !(0..=MAX_WON).contains(&value) {
            return Err(DomainError::new(
                field,
                format!("must be between 0 and {MAX_WON} won"),
            ));
        }
        Ok(Won(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// `price × quantity`, refused when it leaves the money range.
    pub fn times(self, quantity: Quantity) -> Option<Won> {
        self.0
            .checked_mul(quantity.get())
            .filter(|v| *v <= MAX_WON)
            .map(Won)
    }

    /// `self - other`, `None` when it would go below zero.
    pub fn checked_sub(self, other: Won) -> Option<Won> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Won)
    }

    pub fn checked_add(self, other: Won) -> Option<Won> {
        self.0
            .checked_add(other.0)
            .filter(|v| *v <= MAX_WON)
            .map(Won)
    }
}

/// A signed correction of a stock account's `on_hand` (an `adjust` movement): never zero,
/// at most [`MAX_QUANTITY`] units either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StockDelta(i64);

impl StockDelta {
    pub fn new(field: &'static str, value: i64) -> Result<Self, DomainError> {
        if value == 0 || !(-MAX_QUANTITY..=MAX_QUANTITY).contains(&value) {
            return Err(DomainError::new(
                field,
                format!("must be non-zero and between -{MAX_QUANTITY} and {MAX_QUANTITY}"),
            ));
        }
        Ok(StockDelta(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A positive count of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(i64);

impl Quantity {
    pub fn new(field: &'static str, value: i64) -> Result<Self, DomainError> {
        if !(1..=MAX_QUANTITY).contains(&value) {
            return Err(DomainError::new(
                field,
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        Ok(Quantity(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Lower-cases and checks the shape `local@domain.tld`; deliverability is not our concern.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim().to_ascii_lowercase();
        let bad = || DomainError::new("email", "must be an address like name@example.com");
        if email.is_empty() || email.len() > MAX_EMAIL_BYTES {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        let valid_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let valid_local = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '@' && c != '"');
        if !valid_domain || !valid_local {
            return Err(bad());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed; never logged, never stored (only its Argon2id hash is).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, DomainError> {
        if raw.chars().count() < MIN_PASSWORD_CHARS || raw.len() > MAX_PASSWORD_BYTES {
            return Err(DomainError::new(
                "password",
                format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long"),
            ));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The client's `Idempotency-Key`: printable ASCII, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_IDEMPOTENCY_KEY_BYTES
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(DomainError::new(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters"),
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A point in time as Unix epoch milliseconds; serialised as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add((secs as i64).saturating_mul(1000)))
    }

    pub fn minus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_sub((secs as i64).saturating_mul(1000)))
    }

    pub fn parse_rfc3339(field: &'static str, raw: &str) -> Result<Self, DomainError> {
        let parsed =
            time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
                .map_err(|_| DomainError::new(field, "must be an RFC 3339 timestamp"))?;
        Ok(Timestamp(
            (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }

    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339("timestamp", &raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn won_accepts_exactly_its_range(v in any::<i64>()) {
            prop_assert_eq!(Won::new("price", v).is_ok(), (0..=MAX_WON).contains(&v));
        }

        #[test]
        fn quantity_accepts_exactly_its_range(v in any::<i64>()) {
            prop_assert_eq!(Quantity::new("quantity", v).is_ok(), (1..=MAX_QUANTITY).contains(&v));
        }

        #[test]
        fn stock_delta_accepts_exactly_its_range(v in any::<i64>()) {
            let valid = v != 0 && (-MAX_QUANTITY..=MAX_QUANTITY).contains(&v);
            prop_assert_eq!(StockDelta::new("delta", v).is_ok(), valid);
        }

        #[test]
        fn line_total_never_overflows(price in 0..=MAX_WON, q in 1..=MAX_QUANTITY) {
            let price = Won::new("price", price).unwrap();
            let q = Quantity::new("quantity", q).unwrap();
            match price.times(q) {
                Some(total) => prop_assert_eq!(total.get(), price.get() * q.get()),
                None => prop_assert!(i128::from(price.get()) * i128::from(q.get()) > i128::from(MAX_WON)),
            }
        }

        #[test]
        fn timestamps_round_trip_through_rfc3339(ms in 0i64..4_102_444_800_000) {
            let t = Timestamp::from_millis(ms);
            prop_assert_eq!(Timestamp::parse_rfc3339("t", &t.to_rfc3339()).unwrap(), t);
        }
    }

    #[test]
    fn stock_delta_edges() {
        for ok in [1, -1, MAX_QUANTITY, -MAX_QUANTITY] {
            assert_eq!(StockDelta::new("delta", ok).map(StockDelta::get), Ok(ok));
        }
        for bad in [0, MAX_QUANTITY + 1, -MAX_QUANTITY - 1, i64::MIN, i64::MAX] {
            assert!(
                StockDelta::new("delta", bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" A@Example.COM ").unwrap().as_str(),
            "a@example.com"
        );
        for bad in ["", "a", "a@b", "@b.com", "a@.com", "a@b.com.", "a b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(IdempotencyKey::parse("order-1").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }
}
