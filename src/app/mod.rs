//! The use cases: what a buyer, a seller, an admin or an operator can do, each deciding who
//! may do it, checking its input against the domain's rules, and moving the books through
//! the store. The HTTP API (`crate::http`) and the command line (`crate::cli`) only
//! translate to and from these; background work (`crate::jobs`) calls them on a timer.
//!
//! - [`accounts`]: users, logins, refresh tokens, logout, bulk buyers for load tests;
//! - [`catalog`]: partners, products, inbound and stock corrections;
//! - [`placement`]: where orders are placed — the batching writer (group commit), the
//!   waiting room, and the seeds' lock-per-product baseline;
//! - [`orders`]: reading, cancelling and confirming orders, and the deadlines the clock
//!   enforces; [`payments`]: paying through the gateway, and refunds;
//! - [`fulfilment`]: sellers preparing, shipping and delivering their partner orders;
//! - [`coupons`], [`points`], [`waitlist`]: first-come coupons, loyalty points, waitlists;
//! - [`settlement`]: each business day's statements per partner, with their commission;
//! - [`dead_letters`]: the messages consumers gave up on, for operators and the retry job;
//! - [`jobs`]: the scheduled jobs and their last runs, for admins;
//! - [`operations`]: the operations page's snapshot, the nodes' heartbeats, stock gauges;
//! - [`audit`]: what `stampede verify` checks.
//!
//! Every use case returns [`error::AppError`] for what it refuses.

pub mod accounts;
pub mod audit;
pub mod catalog;
pub mod coupons;
pub mod dead_letters;
pub mod error;
pub mod fulfilment;
pub mod jobs;
pub mod operations;
pub mod orders;
pub mod payments;
pub mod placement;
pub mod points;
pub mod settlement;
pub mod waitlist;

use std::sync::Arc;

/// The use cases of one node, built once by the wiring and shared by every request.
pub struct App {
    pub accounts: accounts::Accounts,
    pub catalog: catalog::Catalog,
    pub orders: Arc<orders::Orders>,
    pub payments: Arc<payments::Payments>,
    pub fulfilment: fulfilment::Fulfilment,
    pub coupons: Arc<coupons::Coupons>,
    pub points: Arc<points::Points>,
    pub waitlists: waitlist::Waitlists,
    pub dead_letters: Arc<dead_letters::DeadLetters>,
    pub settlement: Arc<settlement::Settlement>,
    pub jobs: jobs::Jobs,
    pub operations: Arc<operations::Operations>,
}
