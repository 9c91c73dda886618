//! Black-box API tests: each test starts the real server on port 0 against a fresh
//! database and talks to it over HTTP, once on SQLite and once on PostgreSQL
//! (`STAMPEDE_TEST_PG_URL`), the scale-out tests also on Redis (`STAMPEDE_TEST_REDIS_URL`).
//! A service that is missing skips its tests loudly, or fails them when
//! `STAMPEDE_TEST_REQUIRE_PG=1` / `STAMPEDE_TEST_REQUIRE_REDIS=1` (tests/common/services.rs).

// An integration test fails by panicking: its helpers and `backend_tests!` bodies unwrap
// and assert freely, though clippy does not see them as test code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "an integration test fails by panicking"
)]

// Shared with tests/store; this target uses only part of it.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod helpers;

mod abuse;
mod adjust;
mod admin_page;
mod auth;
mod authz;
mod bad_input;
mod catalog;
mod catalog_batch;
mod confirm;
mod coupons;
mod dashboard;
mod dead_letters;
mod events;
mod fulfilment;
mod lifecycle;
mod listing_cache;
mod loadgen;
mod lock_baseline;
mod model;
mod order_benefits;
mod orders;
mod partial_cancel;
mod payments;
mod points;
mod portone;
mod rate_limits;
mod returns;
mod scale_out;
mod settlement;
mod sweeper;
mod verify;
mod waiting_room;
mod waitlist;
mod webhooks;
