//! The Kafka event path against real brokers (issue 9, DESIGN §4 and §6), on PostgreSQL:
//! every test starts a Tansu broker of its own (`STAMPEDE_TEST_TANSU_BIN`), a fresh
//! database and nodes — in process, or child processes of the real binary where a test
//! kills one — and reads the topics back with a plain Kafka client. Built only with
//! `--features kafka` (`required-features` in Cargo.toml); a missing PostgreSQL or Tansu
//! skips its tests loudly, or fails them under `STAMPEDE_TEST_REQUIRE_PG=1` /
//! `STAMPEDE_TEST_REQUIRE_KAFKA=1` (tests/common/services.rs), as `scripts/test` runs them.
//!
//! Tansu's limits shape the harness (DESIGN §6): its high watermarks are wrong after a
//! multi-record batch, so nothing here trusts them — the reader counts what arrives until
//! the expected set is there or a deadline passes; and its storage is in memory, so "the
//! broker is down" is a paused broker (SIGSTOP), not a restarted one.

// An integration test fails by panicking: its helpers and bodies unwrap and assert freely,
// though clippy does not see them as test code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "an integration test fails by panicking"
)]

// Shared with tests/api and tests/store; this target uses only part of it.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
// The API tests' harness (an in-process server on a fresh database, its client and
// fixtures), reused as is; this target uses only part of it, and none of its macros.
#[allow(dead_code, unused_imports, unused_macros)]
#[macro_use]
#[path = "../api/helpers/mod.rs"]
mod helpers;
mod harness;

mod broker_outage;
mod dead_letters;
mod harness_self_test;
mod outbox_to_topics;
mod redelivery;
mod relay_failover;
mod running_cluster;
mod workers;
