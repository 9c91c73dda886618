//! The `settings!` macro: each setting is declared once, and the struct, its `Default`, its
//! reading from the environment, its validation and its `Debug` all come from that one
//! declaration, so that they cannot drift apart.

use super::error::ConfigError;
use super::secret::Redacting;
use std::fmt::Display;
use std::ops::RangeInclusive;

/// What one setting declares about itself, for the tests that keep declarations, `Debug`
/// and the README in step.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The field, and the key in `stampede.toml`.
    pub name: &'static str,
    /// Its type as written in the declaration.
    pub ty: &'static str,
    /// Whether its value (or part of it) is a credential.
    pub secret: bool,
}

impl Setting {
    /// `STAMPEDE_` and the name in capitals.
    pub fn env_var(&self) -> String {
        format!("STAMPEDE_{}", self.name.to_ascii_uppercase())
    }
}

/// How a setting's value is checked on its own. A range `a..=b` is the usual rule; [`Check`]
/// takes a function for the rest, and [`Any`] accepts every value of the type.
pub trait Rule<T> {
    fn check(&self, name: &str, value: &T) -> Result<(), ConfigError>;
}

impl<T: PartialOrd + Display> Rule<T> for RangeInclusive<T> {
    fn check(&self, name: &str, value: &T) -> Result<(), ConfigError> {
        if self.contains(value) {
            return Ok(());
        }
        let (start, end) = (self.start(), self.end());
        Err(ConfigError(format!("{name} must be {start}..={end}")))
    }
}

/// Every value of the type is valid (an address, a choice, or a number only a cross-field
/// check bounds).
pub struct Any;

impl<T> Rule<T> for Any {
    fn check(&self, _: &str, _: &T) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A function that returns what the value must be, e.g. `Err("must start with redis://")`;
/// the error reads `<name> must start with redis://`.
pub struct Check<F>(pub F);

impl<T, F: Fn(&T) -> Result<(), &'static str>> Rule<T> for Check<F> {
    fn check(&self, name: &str, value: &T) -> Result<(), ConfigError> {
        (self.0)(value).map_err(|must| ConfigError(format!("{name} {must}")))
    }
}

/// Lets the macro apply a rule without naming the field's type.
pub fn check<T, R: Rule<T>>(rule: R, name: &str, value: &T) -> Result<(), ConfigError> {
    rule.check(name, value)
}

/// What `Debug` shows of a setting declared `secret`: the value itself, whose type must
/// redact it (a compile error otherwise).
pub fn redacting<T: Redacting>(value: &T) -> &dyn std::fmt::Debug {
    value
}

/// ```text
/// settings! {
///     /// Doc comment (required: it is the setting's documentation).
///     pub struct Config {
///         /// Doc comment.
///         name_with_unit: Type = default, rule;
///         /// A credential: its type must redact it in `Debug`.
///         other: Type = default, rule, secret;
///     }
/// }
/// ```
/// The rule is a range (`1..=600`), `Check(function)` or `Any` (see [`Rule`]).
macro_rules! settings {
    (@debug $value:expr, secret) => { $crate::config::declare::redacting($value) };
    (@debug $value:expr) => { $value };
    (@secret secret) => { true };
    (@secret) => { false };
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $field_doc:literal])+
                $field:ident: $ty:ty = $default:expr, $rule:expr $(, $secret:ident)?;
            )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, ::serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $field_doc])+ pub $field: $ty, )+
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )+ }
            }
        }

        /// Every setting, secrets included: their types redact them.
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $( .field(
                        stringify!($field),
                        $crate::config::declare::settings!(@debug &self.$field $(, $secret)?),
                    ) )+
                    .finish()
            }
        }

        impl $name {
            /// Every setting, in declaration order.
            pub const SETTINGS: &'static [$crate::config::declare::Setting] = &[$(
                $crate::config::declare::Setting {
                    name: stringify!($field),
                    ty: stringify!($ty),
                    secret: $crate::config::declare::settings!(@secret $($secret)?),
                },
            )+];

            /// Sets each setting whose `STAMPEDE_<NAME>` variable `var` finds.
            fn apply_env(
                &mut self,
                var: impl Fn(&str) -> Option<String>,
            ) -> Result<(), ConfigError> {
                $(
                    let name = concat!("STAMPEDE_", stringify!($field)).to_ascii_uppercase();
                    if let Some(raw) = var(&name) {
                        self.$field = $crate::config::env::FromEnv::from_env(&name, raw)?;
                    }
                )+
                Ok(())
            }

            /// Each setting's own rule, in declaration order.
            fn validate_each(&self) -> Result<(), ConfigError> {
                $( $crate::config::declare::check($rule, stringify!($field), &self.$field)?; )+
                Ok(())
            }
        }
    };
}

pub(crate) use settings;
