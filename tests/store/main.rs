//! The store contract: every test runs through the public store API (`Arc<dyn Store>`)
//! once on SQLite and once on PostgreSQL, each on a fresh, migrated database, so both
//! backends answer alike (STYLE §3). A test that can only mean something on PostgreSQL
//! says why beside its `store_tests!(…, postgres_only, …)`; a test of a migration
//! (`migrations.rs`) starts unmigrated and writes rows under the schema before it.
//!
//! PostgreSQL comes from `STAMPEDE_TEST_PG_URL` under the rule of
//! `tests/common/services.rs` (`STAMPEDE_TEST_REQUIRE_PG=1` makes its absence a failure).

// A test fails by panicking: its harness and fixtures unwrap and assert freely, though
// clippy does not see them as test code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "an integration test fails by panicking"
)]

// Shared with tests/api; this target uses only part of it.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod harness;
mod fixtures;

mod auth;
mod catalog;
mod catalog_batch;
mod event_stream;
mod fulfilment;
mod migrations;
mod orders;
mod outbox;
mod partial_cancel;
mod placement;
mod returns;
mod settlement;
mod waitlist;
