//! What every integration-test target shares: unique names, the one rule for the services a
//! test needs ([`services`]), and fresh databases on either backend ([`databases`]).
//!
//! Not a test target of its own (Cargo builds `tests/*.rs` and `tests/*/main.rs` only): each
//! target includes it with `#[path = "../common/mod.rs"] mod common;`. A target uses only
//! part of it, so the including `mod` line allows dead code.

pub mod databases;
pub mod names;
pub mod services;
