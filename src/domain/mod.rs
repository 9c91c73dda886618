//! Pure domain types and rules. Nothing here touches the database, the network or the clock:
//! values are parsed once at the edge ("parse, don't validate") and the allocation of a
//! placement batch is a pure function so it can be property-tested.

pub mod actor;
pub mod allocation;
pub mod coupon;
pub mod dead_letter;
pub mod error;
pub mod event_names;
pub mod events;
pub mod fulfilment;
pub mod order;
pub mod points;
pub mod settlement;
pub mod shares;
pub mod values;
pub mod waitlist;

pub use actor::Actor;
pub use error::DomainError;
pub use order::{OrderStatus, Role};
pub use values::{Email, IdempotencyKey, Password, Quantity, StockDelta, Timestamp, Won};
