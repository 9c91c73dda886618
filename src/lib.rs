//! Stampede: a commerce backend for limited-edition drops and flash sales.
//!
//! Where things live:
//! - `domain/` — pure rules and values: money, quantities, the order lifecycle, and the
//!   allocation of a placement batch (`domain::allocation`).
//! - `store/` — the storage traits and one module per backend (`store::sqlite`,
//!   `store::postgres`), each owning its SQL and migrations. Stock is held, committed and
//!   released in `store/*/orders.rs`.
//! - `placement` — the batching order writer (group commit) of DESIGN §3.
//! - `outbox` — the event dispatcher feeding live streams, the gate, the cache, the deny-list.
//! - `cluster/` — what nodes share (availability gate, listing cache, rate limits, deny-list,
//!   live-update wake-ups): one trait per concern, in process or through Redis.
//! - `sweeper` — releases holds whose payment deadline passed; confirms purchases paid
//!   `auto_confirm_after_secs` ago.
//! - `waitlist` — offers returned units to the buyers waiting for a sold-out product.
//! - `coupons` — first-come coupon claims in front of the database (gate in
//!   `cluster::coupon_gate`, SQL in `store/*/coupons.rs`, arithmetic in `domain::coupon`).
//! - `points` — loyalty points: earning on purchase confirmation (exactly once, by event
//!   id), the expiry job (one node, by lease), holds (rules in `domain::points`, SQL in
//!   `store/*/points.rs`).
//! - `http/` — the API: router, error codes (`http::error`), handlers, OpenAPI.
//! - `server` — wires it all; `cli` and `main` only parse and call it.
//! - `loadgen` — the load generator (`stampede loadgen`), a client of the HTTP API.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod coupons;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod payment;
pub mod placement;
pub mod points;
pub mod server;
pub mod store;
pub mod sweeper;
pub mod verify;
pub mod waitlist;
