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

/// A URL (or a libpq connection string) fit for logs and error messages. Credentials are
/// hidden, what helps diagnosis stays:
/// - user information: `postgres://user:secret@host/db` → `postgres://user:***@host/db`,
///   `scheme://:secret@host` → `scheme://:***@host`; a bare user stays
///   (`postgres://app@host`), except in Redis URLs, where clients such as Lettuce read
///   `redis://secret@host` as a password, so it is hidden there;
/// - query and fragment parameters named like a credential (see [`is_secret_key`]), in any
///   case and percent-encoded: `?sslmode=require&password=x` → `?sslmode=require&password=***`;
/// - libpq's keyword/value form: `host=db password='a b' user=app` →
///   `host=db password=*** user=app`.
///
/// A password may hold any character, `@`, `:` and `/` included, when its writer did not
/// percent-encode it; so everything up to the *last* `@` counts as user information, unless
/// that `@` sits in the query (a `?` or `#`, then a `key=value`, before it). Hiding too much
/// of an odd URL beats showing a password.
pub fn redact_url(url: &str) -> String {
    if is_keyword_value(url) {
        return redact_keyword_value(url);
    }
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let (userinfo, location) = match split_userinfo(rest) {
        (Some(info), location) if !scheme.is_empty() => (Some(info), location),
        _ => (None, rest),
    };
    let mut shown = scheme.to_owned();
    if let Some(info) = userinfo {
        shown.push_str(&redact_userinfo(scheme, info));
        shown.push('@');
    }
    shown.push_str(&redact_query(location));
    shown
}

/// `(user information, the rest)` of what follows `scheme://`.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let Some(last_at) = rest.rfind('@') else {
        return (None, rest);
    };
    // A `?` or `#` before the last `@` either starts the query (and the `@` is in a value,
    // `?application_name=me@corp`) or is part of an unencoded password. A query has a
    // `key=value` before the `@`; a password almost never does.
    let in_query = rest
        .find(['?', '#'])
        .filter(|&q| q < last_at && rest[q..last_at].contains('='));
    let at = match in_query {
        Some(q) => rest[..q].rfind('@'),
        None => Some(last_at),
    };
    match at {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

/// The user stays, the password goes (a user name holds no `:`, a password may).
fn redact_userinfo(scheme: &str, info: &str) -> String {
    match info.split_once(':') {
        Some((user, _)) => format!("{user}:{HIDDEN}"),
        None if scheme.to_ascii_lowercase().starts_with("redis") => HIDDEN.to_owned(),
        None => info.to_owned(),
    }
}

/// Hides the values of the credential parameters in the query and the fragment of
/// `location` (what follows the user information).
fn redact_query(location: &str) -> String {
    let (before_fragment, fragment) = match location.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (location, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    let mut shown = path.to_owned();
    if let Some(query) = query {
        shown.push('?');
        shown.push_str(&redact_pairs(query));
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(&redact_pairs(fragment));
    }
    shown
}

/// `a=1&password=x` → `a=1&password=***`.
fn redact_pairs(pairs: &str) -> String {
    let shown: Vec<String> = pairs
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect();
    shown.join("&")
}

/// Whether a parameter of this name carries a credential: `pass`, `pwd`, `auth`, or a name
/// containing `password` (`sslpassword` too), `secret`, `token` (`access_token`), `apikey`,
/// `api_key` or `api-key`. Compared percent-decoded and case-insensitively, so
/// `PASS%57ORD` is caught. `authSource` or `sslkey` (a file path) are not credentials.
fn is_secret_key(key: &str) -> bool {
    const NAMED: [&str; 3] = ["pass", "pwd", "auth"];
    const WITHIN: [&str; 6] = [
        "password", "secret", "token", "apikey", "api_key", "api-key",
    ];
    let key = percent_decode(key.trim()).to_ascii_lowercase();
    NAMED.contains(&key.as_str()) || WITHIN.iter().any(|part| key.contains(part))
}

/// `%XX` sequences decoded; anything else, a malformed `%` included, kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// libpq's `host=db user=app password=x` (no `://`, and it opens with `keyword=`).
fn is_keyword_value(text: &str) -> bool {
    if text.contains("://") {
        return false;
    }
    let (key, after) = split_keyword(text.trim_start());
    !key.is_empty() && after.trim_start().starts_with('=')
}

/// `(keyword, the rest)`: a keyword is letters, digits and `_`.
fn split_keyword(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Hides the values of the credential keywords of a libpq connection string; spacing and
/// the other values stay as written. Past anything that is not `keyword = value` the rest
/// is hidden: a guess there could show a password.
fn redact_keyword_value(conninfo: &str) -> String {
    let mut shown = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    loop {
        let trimmed = rest.trim_start();
        shown.push_str(&rest[..rest.len() - trimmed.len()]);
        if trimmed.is_empty() {
            return shown;
        }
        let (key, after_key) = split_keyword(trimmed);
        let Some(after_eq) = after_key.trim_start().strip_prefix('=') else {
            shown.push_str(HIDDEN);
            return shown;
        };
        let value = after_eq.trim_start();
        let value_len = libpq_value_len(value);
        // The keyword, the `=` and the spacing around it, as written.
        shown.push_str(&trimmed[..trimmed.len() - value.len()]);
        shown.push_str(if is_secret_key(key) {
            HIDDEN
        } else {
            &value[..value_len]
        });
        rest = &value[value_len..];
    }
}

/// Bytes of the value that opens `value`: up to the closing quote of a single-quoted value,
/// else up to the next whitespace; a backslash escapes the next character in both (libpq's
/// rules). An unclosed quote runs to the end.
fn libpq_value_len(value: &str) -> usize {
    let quoted = value.starts_with('\'');
    let mut escaped = false;
    for (i, c) in value.char_indices().skip(usize::from(quoted)) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' if quoted => return i + 1,
            c if !quoted && c.is_whitespace() => return i,
            _ => {}
        }
    }
    value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks each `(input, shown)`, and that the secret `s3cret` never shows.
    fn check(cases: &[(&str, &str)]) {
        for (url, expected) in cases {
            let shown = redact_url(url);
            assert_eq!(&shown, expected, "redact_url({url:?})");
            assert!(!shown.contains("s3cret"), "{url} → {shown}");
        }
    }

    #[test]
    fn user_information_hides_the_password_and_keeps_the_user() {
        check(&[
            (
                "postgres://app:s3cret@db:5432/stampede",
                "postgres://app:***@db:5432/stampede",
            ),
            (
                "postgres://:s3cret@db/stampede",
                "postgres://:***@db/stampede",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            (
                "postgres://app:@db/stampede",
                "postgres://app:***@db/stampede",
            ),
            ("POSTGRESQL://App:s3cret@DB/x", "POSTGRESQL://App:***@DB/x"),
        ]);
    }

    #[test]
    fn passwords_with_separators_end_at_the_last_at() {
        check(&[
            (
                "postgres://app:s3@cret@db/stampede",
                "postgres://app:***@db/stampede",
            ),
            (
                "postgres://app:s3:cret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            (
                "postgres://app:s3/cret@db/stampede",
                "postgres://app:***@db/stampede",
            ),
            (
                "postgres://app:a@b:c/s3cret@db:5432/x?sslmode=require",
                "postgres://app:***@db:5432/x?sslmode=require",
            ),
            ("postgres://app:s3?cret@db/x", "postgres://app:***@db/x"),
            ("postgres://app:s3#cret@db/x", "postgres://app:***@db/x"),
            ("redis://:s3cret@@cache", "redis://:***@cache"),
        ]);
    }

    #[test]
    fn an_at_in_the_query_is_not_user_information() {
        check(&[
            (
                "postgres://db/x?application_name=me@corp&password=s3@cret",
                "postgres://db/x?application_name=me@corp&password=***",
            ),
            (
                "postgres://app:s3cret@db/x?application_name=me@corp",
                "postgres://app:***@db/x?application_name=me@corp",
            ),
        ]);
    }

    #[test]
    fn credential_query_parameters_are_hidden() {
        for key in [
            "password",
            "pass",
            "pwd",
            "secret",
            "client_secret",
            "token",
            "access_token",
            "api_key",
            "apikey",
            "x-api-key",
            "sslpassword",
            "auth",
            "PASSWORD",
            "Access_Token",
            "ApiKey",
            "pass%77ord",
            "%70%61%73%73",
            "%41uth",
        ] {
            check(&[
                (
                    &format!("postgres://db:5432/x?sslmode=require&{key}=s3cret&a=1"),
                    &format!("postgres://db:5432/x?sslmode=require&{key}=***&a=1"),
                ),
                (
                    &format!("postgres://db/x?{key}=s3cret"),
                    &format!("postgres://db/x?{key}=***"),
                ),
            ]);
        }
    }

    #[test]
    fn other_query_parameters_stay_readable() {
        for url in [
            "postgres://db/x?sslmode=require&sslkey=/etc/key.pem&application_name=api",
            "mongodb://db/x?authSource=admin&passive=true",
            "postgres://db/x?password",
            "redis://cache/0?protocol=resp3",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn fragments_are_kept_apart_from_the_query() {
        check(&[
            (
                "postgres://db/x?password=s3cret#main",
                "postgres://db/x?password=***#main",
            ),
            (
                "postgres://app:s3cret@db/x?sslmode=require#part",
                "postgres://app:***@db/x?sslmode=require#part",
            ),
            (
                "https://host/callback#access_token=s3cret&state=abc",
                "https://host/callback#access_token=***&state=abc",
            ),
        ]);
    }

    #[test]
    fn libpq_keyword_value_strings_hide_their_passwords() {
        check(&[
            (
                "host=db port=5432 password=s3cret user=app",
                "host=db port=5432 password=*** user=app",
            ),
            (
                "host=db password='s3cret with spaces' dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                r"password='s3cret \' quoted' user=app",
                "password=*** user=app",
            ),
            (r"password=s3cret\ spaced user=app", "password=*** user=app"),
            (
                "  host = db   password = s3cret sslpassword=s3cret",
                "  host = db   password = *** sslpassword=***",
            ),
            ("PASSWORD=s3cret", "PASSWORD=***"),
            ("host=db password='s3cret", "host=db password=***"),
            ("host=db password s3cret", "host=db ***"),
        ]);
    }

    #[test]
    fn redis_urls_hide_passwords_and_bare_user_information() {
        check(&[
            ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
            ("rediss://:s3cret@cache:6380", "rediss://:***@cache:6380"),
            (
                "rediss://default:s3cret@cache.example.com:6380/1",
                "rediss://default:***@cache.example.com:6380/1",
            ),
            // Lettuce reads a bare user information as the password.
            ("redis://s3cret@cache", "redis://***@cache"),
            ("rediss://s3cret@cache", "rediss://***@cache"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "redis://cache:6379/0?password=s3cret",
                "redis://cache:6379/0?password=***",
            ),
        ]);
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "sqlite://stampede.db",
            "sqlite:stampede.db?mode=rwc",
            "stampede.db",
            "postgres://db:5432/stampede?sslmode=require",
            "redis://127.0.0.1:6379",
            "redis+unix:///run/redis.sock",
            "host=db port=5432 dbname=stampede",
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
