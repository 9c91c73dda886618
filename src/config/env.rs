//! How a `STAMPEDE_*` environment variable becomes a setting's value, one rule per type.

use super::error::ConfigError;
use super::proxies::TrustedProxies;
use super::secret::{ConnectionUrl, Secret};
use std::net::SocketAddr;

/// Reads a setting's value from the text of its environment variable `name`.
pub trait FromEnv: Sized {
    fn from_env(name: &str, raw: String) -> Result<Self, ConfigError>;
}

/// Numbers and addresses: the error names the variable and the text, which is all an
/// operator needs (the standard parse errors add nothing useful).
macro_rules! from_env_by_parsing {
    ($($ty:ty),* $(,)?) => {$(
        impl FromEnv for $ty {
            fn from_env(name: &str, raw: String) -> Result<Self, ConfigError> {
                raw.parse()
                    .map_err(|_| ConfigError(format!("{name}: cannot parse {raw:?}")))
            }
        }
    )*};
}

from_env_by_parsing!(u32, u64, usize, i64, SocketAddr);

impl FromEnv for String {
    fn from_env(_: &str, raw: String) -> Result<Self, ConfigError> {
        Ok(raw)
    }
}

impl FromEnv for ConnectionUrl {
    fn from_env(_: &str, raw: String) -> Result<Self, ConfigError> {
        Ok(ConnectionUrl::from(raw))
    }
}

/// An optional URL set to nothing (`STAMPEDE_REDIS_URL=`) is unset: a compose file or a
/// script can then turn Redis off without removing the variable.
impl FromEnv for Option<ConnectionUrl> {
    fn from_env(_: &str, raw: String) -> Result<Self, ConfigError> {
        Ok(Some(raw)
            .filter(|url| !url.trim().is_empty())
            .map(ConnectionUrl::from))
    }
}

/// The same for an optional list such as `STAMPEDE_KAFKA_BROKERS=`: empty is unset.
impl FromEnv for Option<String> {
    fn from_env(_: &str, raw: String) -> Result<Self, ConfigError> {
        Ok(Some(raw).filter(|value| !value.trim().is_empty()))
    }
}

/// An empty secret is kept, and validation refuses it as too short: reading it as unset
/// would silently switch to the generated secret, hiding the mistake.
impl FromEnv for Option<Secret> {
    fn from_env(_: &str, raw: String) -> Result<Self, ConfigError> {
        Ok(Some(Secret::from(raw)))
    }
}

/// Parsed here, so a bad list names the variable like any other unparseable value.
impl FromEnv for TrustedProxies {
    fn from_env(name: &str, raw: String) -> Result<Self, ConfigError> {
        TrustedProxies::parse(&raw).map_err(|must| ConfigError(format!("{name}: {raw:?} {must}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: FromEnv>(raw: &str) -> Result<T, ConfigError> {
        T::from_env("STAMPEDE_X", raw.to_owned())
    }

    #[test]
    fn numbers_and_addresses_parse_or_name_the_variable() {
        assert_eq!(read::<u32>("7").unwrap(), 7);
        assert_eq!(read::<u64>("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(read::<usize>("65536").unwrap(), 65_536);
        assert_eq!(read::<i64>("-1").unwrap(), -1);
        assert_eq!(
            read::<SocketAddr>("0.0.0.0:9000").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 9000))
        );
        for bad in [
            read::<u32>("-1").map(|_| ()),
            read::<u64>("soon").map(|_| ()),
            read::<usize>("").map(|_| ()),
            read::<i64>("1.5").map(|_| ()),
            read::<SocketAddr>("localhost").map(|_| ()),
        ] {
            let message = bad.unwrap_err().to_string();
            assert!(message.contains("STAMPEDE_X: cannot parse"), "{message}");
        }
    }

    #[test]
    fn strings_and_urls_are_taken_as_given() {
        assert_eq!(read::<String>(" a b ").unwrap(), " a b ");
        assert_eq!(read::<ConnectionUrl>("").unwrap().expose(), "");
        let url = read::<Option<ConnectionUrl>>("redis://h").unwrap();
        assert_eq!(url.as_ref().map(ConnectionUrl::expose), Some("redis://h"));
    }

    #[test]
    fn an_empty_optional_url_is_unset_but_an_empty_secret_is_kept() {
        assert!(read::<Option<ConnectionUrl>>(" ").unwrap().is_none());
        let secret = read::<Option<Secret>>("").unwrap();
        assert_eq!(secret.as_ref().map(Secret::expose), Some(""));
    }
}
