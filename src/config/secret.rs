//! Values that must not reach logs or error messages whole: a [`Secret`] is never shown, a
//! [`ConnectionUrl`] is shown without its credentials. Both hand out the real value only
//! through `expose()`, so every place that uses it is easy to find.

use serde::Deserialize;
use std::fmt;

const REDACTED: &str = "<redacted>";
const HIDDEN: &str = "***";

/// A type whose `Debug` hides what must stay secret. A setting declared `secret` must have
/// such a type (checked at compile time), so no later edit can print one by mistake.
pub trait Redacting: fmt::Debug {}

impl<T: Redacting> Redacting for Option<T> {}

/// A secret string (a signing key, a token). `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Redacting for Secret {}

/// The URL of a database or of Redis, which may carry a password. `Debug` and `Display`
/// show it through [`redact_url`]: the host and database stay visible for diagnosis.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    pub fn new(url: impl Into<String>) -> ConnectionUrl {
        ConnectionUrl(url.into())
    }

    /// The full URL, credentials included: only to connect.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl From<String> for ConnectionUrl {
    fn from(url: String) -> ConnectionUrl {
        ConnectionUrl(url)
    }
}

impl From<&str> for ConnectionUrl {
    fn from(url: &str) -> ConnectionUrl {
        ConnectionUrl(url.to_owned())
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Redacting for ConnectionUrl {}

/// A URL fit for logs and error messages:
/// - `postgres://user:secret@host/db` → `postgres://user:***@host/db`;
/// - `redis://s3cret@host` → `redis://***@host` (a bare user information may be a token,
///   and nothing tells a token from a user name);
/// - `postgres://host/db?password=x` → `postgres://host/db?password=***`: any query
///   parameter whose name contains `password` (libpq's `sslpassword` too), and `pass`
///   (how a `redis+unix://` URL carries its password).
///
/// A password may hold any character, `@` and `/` included, when its writer did not
/// percent-encode it; so everything up to the *last* `@` counts as user information.
/// Hiding too much of an odd URL beats showing a password.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let (userinfo, location) = match rest.rfind('@') {
        Some(at) if !scheme.is_empty() => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let mut shown = scheme.to_owned();
    match userinfo.map(|info| info.split_once(':')) {
        Some(Some((user, _))) => shown.push_str(&format!("{user}:{HIDDEN}@")),
        Some(None) => shown.push_str(&format!("{HIDDEN}@")),
        None => {}
    }
    shown.push_str(&redact_query(location));
    shown
}

/// Hides the values of the password parameters of the query in `location`, if any.
fn redact_query(location: &str) -> String {
    let Some((path, query)) = location.split_once('?') else {
        return location.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}={HIDDEN}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

fn is_password_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "pass" || key.contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_keeps_the_user() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/stampede"),
            "postgres://app:***@db:5432/stampede"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
    }

    #[test]
    fn bare_user_information_is_hidden() {
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://***@127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn password_query_parameters_are_hidden() {
        assert_eq!(
            redact_url("postgres://host/db?password=x"),
            "postgres://host/db?password=***"
        );
        assert_eq!(
            redact_url("postgres://host/db?sslmode=require&PASSWORD=x&sslpassword=y"),
            "postgres://host/db?sslmode=require&PASSWORD=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@host/db?password=x"),
            "postgres://u:***@host/db?password=***"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
    }

    #[test]
    fn odd_passwords_do_not_leak() {
        for (url, secret) in [
            ("postgres://u:p@ss/w?rd@host/db", "ss/w?rd"),
            ("redis://:a@b@host", "a@b"),
            ("postgres://host/db?password=a@b", "a@b"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} → {shown}");
        }
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "sqlite://stampede.db",
            "sqlite:stampede.db?mode=rwc",
            "postgres://db:5432/stampede?sslmode=require",
            "redis://127.0.0.1:6379",
            "redis+unix:///run/redis.sock",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn secret_types_hide_their_value() {
        let secret = Secret::new("x".repeat(40));
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), "x".repeat(40));
        let url = ConnectionUrl::from("redis://:s3cret@cache");
        assert_eq!(format!("{url:?}"), "\"redis://:***@cache\"");
        assert_eq!(url.to_string(), "redis://:***@cache");
        assert_eq!(url.expose(), "redis://:s3cret@cache");
    }

    #[test]
    fn secret_types_read_from_toml_as_plain_strings() {
        #[derive(Deserialize)]
        struct Both {
            secret: Secret,
            url: ConnectionUrl,
        }
        let both: Both = toml::from_str("secret = \"k\"\nurl = \"redis://h\"").unwrap();
        assert_eq!(
            (both.secret.expose(), both.url.expose()),
            ("k", "redis://h")
        );
    }
}
