//! Stampede: a commerce backend for limited-edition drops and flash sales.
//!
//! The layers, top to bottom; each imports only the layers below it (checked by
//! `tests/architecture.rs`):
//!
//! - `main`, [`cli`] — the one binary's commands; [`wiring`] builds a node from the
//!   configuration and is imported by nothing else.
//! - [`http`] — the API: router, error codes (`http::error`), handlers, OpenAPI. Handlers
//!   translate between JSON and the use cases.
//! - [`jobs`] — background work under one scheduler (leases for once-per-cluster jobs).
//! - [`app`] — the use cases: accounts, catalog, placement (where orders are placed),
//!   orders, payments, coupons, points, waitlists, and the audit behind `stampede verify`.
//! - [`events`] — the outbox dispatcher and the live-update hub.
//! - Adapters: [`store`] (the storage traits, one file per area; `store/sqlite/` and
//!   `store/postgres/` each own their SQL and migrations, `store/sql.rs` the statements both
//!   run as written — stock is held, committed and released in the backends' `stock.rs`),
//!   [`cluster`] (what nodes share, in process or through Redis), [`payment`] (the gateway),
//!   [`auth`] (passwords and tokens), [`metrics`], [`config`], [`clock`] (the one reader of
//!   the wall clock).
//! - [`domain`] — pure rules and values: money, quantities, the order lifecycle, the
//!   allocation of a placement batch, event names and payloads.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod payment;
pub mod store;
pub mod wiring;
