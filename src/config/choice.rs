//! Settings that pick one of a few named implementations. Each is an enum declared with its
//! strings once: TOML (serde) and the environment (`FromStr`) accept the same strings and
//! refuse others with the same message (serde's, which lists the accepted ones).

/// Declares a choice: `Variant = "string",` per line. Adding an implementation is adding a
/// line (and its `match` arm where the choice is used; the compiler finds those).
macro_rules! choice {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $( $(#[doc = $variant_doc:literal])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, PartialEq, Eq, ::serde::Deserialize)]
        pub enum $name {
            $( $(#[doc = $variant_doc])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The string that selects this variant in TOML and in the environment.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        /// The string as configured (`"batch"`), so the configuration logged at start reads
        /// like the file that set it.
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Through serde's derived implementation, so that the environment accepts exactly
        /// what TOML accepts, with the same error.
        impl ::std::str::FromStr for $name {
            type Err = ::serde::de::value::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                use ::serde::de::IntoDeserializer;
                <$name as ::serde::Deserialize>::deserialize(text.into_deserializer())
            }
        }

        impl super::env::FromEnv for $name {
            fn from_env(name: &str, raw: String) -> Result<Self, super::ConfigError> {
                raw.parse().map_err(|e| super::ConfigError(format!("{name}: {e}")))
            }
        }
    };
}

choice! {
    /// How orders are placed.
    pub enum PlacementStrategy {
        /// The placement writer: batches of orders, one transaction each.
        Batch = "batch",
        /// The seeds' Redis-lock-per-product approach, kept only as the benchmark baseline;
        /// it needs `redis_url`.
        Lock = "lock",
    }
}

choice! {
    /// Which payment gateway takes the money.
    pub enum PaymentGateway {
        /// Moves no money: approves a valid amount, declines a `payment_key` starting with
        /// `decline`. Named so nobody mistakes it for a real gateway.
        Simulated = "simulated",
        /// PortOne V2 (`portone_*` settings).
        Portone = "portone",
    }
}

choice! {
    /// Where the server runs.
    pub enum Environment {
        /// A developer's machine or a test: the payment simulator is allowed.
        Development = "development",
        /// Real buyers and real money: the simulator is refused.
        Production = "production",
    }
}

choice! {
    /// Whether `serve` runs the consumer workers too.
    pub enum Workers {
        /// One binary does everything: `serve` runs the consumer groups beside the API.
        On = "on",
        /// Only `stampede worker` processes consume.
        Off = "off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::FromEnv;
    use std::str::FromStr;

    /// Every variant's string selects it in the environment and in TOML, and names it back.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + FromStr + FromEnv + serde::de::DeserializeOwned,
        T::Err: std::fmt::Debug,
    {
        #[derive(serde::Deserialize)]
        struct Wrapper<T> {
            value: T,
        }
        for &variant in all {
            let text = as_str(variant);
            assert_eq!(text.parse::<T>().unwrap(), variant);
            assert_eq!(T::from_env("STAMPEDE_X", text.to_owned()).unwrap(), variant);
            let toml: Wrapper<T> = toml::from_str(&format!("value = {text:?}")).unwrap();
            assert_eq!(toml.value, variant);
        }
    }

    /// `expected` is serde's list of the accepted strings, which both sources must show.
    fn refuses<T>(expected: &str)
    where
        T: std::fmt::Debug + FromStr + FromEnv + serde::de::DeserializeOwned,
        T::Err: std::fmt::Display,
    {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)] // only its parse error matters
        struct Wrapper<T> {
            value: T,
        }
        for text in ["", "Batch", "BATCH", "locks", "PortOne", " simulated"] {
            let from_str = text.parse::<T>().unwrap_err().to_string();
            assert_eq!(from_str, format!("unknown variant `{text}`, {expected}"));
            let env = T::from_env("STAMPEDE_X", text.to_owned()).unwrap_err();
            assert!(env.to_string().ends_with(&from_str), "{env}");
            let toml = toml::from_str::<Wrapper<T>>(&format!("value = {text:?}")).unwrap_err();
            assert!(toml.to_string().contains(&from_str), "{toml}");
        }
    }

    #[test]
    fn placement_strategy_parses_its_strings_and_refuses_others() {
        round_trips(PlacementStrategy::ALL, PlacementStrategy::as_str);
        assert_eq!(PlacementStrategy::Lock.to_string(), "lock");
        assert_eq!(format!("{:?}", PlacementStrategy::Batch), "\"batch\"");
        refuses::<PlacementStrategy>("expected `batch` or `lock`");
    }

    #[test]
    fn payment_gateway_parses_its_strings_and_refuses_others() {
        round_trips(PaymentGateway::ALL, PaymentGateway::as_str);
        assert_eq!(PaymentGateway::Simulated.to_string(), "simulated");
        assert_eq!(PaymentGateway::Portone.to_string(), "portone");
        refuses::<PaymentGateway>("expected `simulated` or `portone`");
    }

    #[test]
    fn environment_parses_its_strings_and_refuses_others() {
        round_trips(Environment::ALL, Environment::as_str);
        refuses::<Environment>("expected `development` or `production`");
    }
}
