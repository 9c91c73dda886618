//! The HTTP API (DESIGN §5): one router, one error type, extractors that reject bad input
//! with stable codes, and middleware for metrics, timeouts, body limits and rate limits.
//! Handlers translate between JSON and the use cases of `crate::app`, nothing more.

pub mod admin_page;
pub mod auth;
pub mod catalog;
pub mod coupons;
pub mod dashboard;
pub mod dead_letters;
pub mod error;
pub mod extract;
pub mod fulfilment;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod order_view;
pub mod orders;
pub mod page;
pub mod points;
pub mod queue;
pub mod rendered;
pub mod router;
pub mod settlement;
pub mod state;
pub mod streams;
pub mod waitlist;
pub mod webhooks;

pub use page::PageView;
pub use router::router;
pub use state::{AppState, Shared};
