//! Why a configuration was refused; a leaf, so every part of the module can build one.

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub(super) String);
