//! Waitlists of sold-out products: buyers stand in line ([`lines`]), and units that come
//! back are offered down the line as held orders ([`offers`]), woken by the dispatcher
//! through the [`signal`].

pub mod lines;
pub mod offers;
pub mod signal;

pub use lines::Waitlists;
pub use offers::{offer_key, offer_request, Offers, Pass};
pub use signal::Signal;
