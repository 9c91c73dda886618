//! Events after they are committed (DESIGN §4). Every state change appends an event to the
//! outbox table in its own transaction (the stores do that); this module takes them from
//! there:
//!
//! - [`dispatcher`] tails the outbox on every node and feeds what each node keeps: live
//!   streams ([`hub`]), the availability gate, the listing cache, the token deny-list, and
//!   the [`Subscriber`]s the wiring registers (waitlist offers, points earning);
//! - [`sync`] lets a handler wake the dispatcher, or wait until it caught up.
//!
//! - [`message`] is an event as it travels on Kafka; [`handler`] the once-per-cluster work
//!   the consumer workers run.

pub mod dispatcher;
pub mod handler;
pub mod hub;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod message;
pub mod subscriber;
pub mod sync;

pub use dispatcher::Dispatcher;
pub use handler::{Handler, Handlers};
pub use hub::{Hub, OrderUpdate, UserEvent};
pub use subscriber::Subscriber;
pub use sync::{DispatchProgress, EventSync};
