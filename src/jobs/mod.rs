//! Background work, behind one [`scheduler`]: the sweeper (payment deadlines, automatic
//! purchase confirmation), waitlist offers, points earning, and, on one node at a time by
//! lease, points expiry, the retries of [`dead_letters`], the daily [`settlement`], the
//! scheduled [`verify`], the payment reconciler ([`reconcile`]) and, without Kafka, the
//! retries of failed gateway refunds ([`refunds`]). Each job is a thin timer around a use
//! case of `crate::app`.

pub mod dead_letters;
pub mod handlers;
pub mod operations;
pub mod points;
pub mod reconcile;
pub mod refunds;
pub mod scheduler;
pub mod settlement;
pub mod sweeper;
pub mod verify;
pub mod waitlist;

pub use scheduler::{Job, Schedule, Scheduler, Scope, Trigger};
