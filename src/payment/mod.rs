//! The payment gateway boundary. The buyer pays at the gateway under a `payment_id` that
//! we issued at checkout; before committing anything we ask the gateway what it knows
//! about that payment (status, amount, currency) and compare it with the order. Money goes
//! back by cancelling that payment, whole or in part.

use async_trait::async_trait;

pub mod breaker;
pub mod guarded;
pub mod portone;
pub mod simulated;
pub mod webhook;

pub use breaker::{BreakerError, BreakerSettings, CircuitBreaker};
pub use guarded::GuardedGateway;
pub use portone::{PortOneGateway, PortOneSettings};
pub use simulated::SimulatedGateway;

/// The one currency Stampede sells in: won, an integer number of them.
pub const CURRENCY: &str = "KRW";

/// What the gateway says about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayPayment {
    /// Captured: `amount` in the smallest unit of `currency` (won for KRW).
    Paid { amount: i64, currency: String },
    /// Known but not captured: `status` is the gateway's own word (PortOne's `READY`,
    /// `FAILED`, `CANCELLED`, …).
    NotPaid { status: String },
    /// The gateway does not know this payment (or it belongs to another store).
    NotFound,
}

/// The gateway's status of a payment that failed (declined by the card issuer…), as
/// opposed to one still waiting for the buyer.
pub const STATUS_FAILED: &str = "FAILED";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A timeout, a network failure or a 5xx: transient, worth retrying later, and a
    /// failure for a circuit breaker.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request (a 4xx other than not-found): retrying the same
    /// request will not help.
    #[error("payment gateway refused the request: {0}")]
    Rejected(String),
    /// Not asked: the circuit breaker is open (the gateway has been failing), and lets
    /// calls through again after `retry_after` ([`guarded::GuardedGateway`]).
    #[error("payment gateway failing: not asked for {retry_after:?}")]
    Busy { retry_after: std::time::Duration },
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// What the gateway knows about `payment_id`. `expected_amount` (the order's payable
    /// amount) only lets the simulator answer as a paying buyer would; a real gateway
    /// ignores it and reports what it captured.
    async fn payment(
        &self,
        payment_id: &str,
        expected_amount: i64,
    ) -> Result<GatewayPayment, GatewayError>;
    /// Cancels (refunds) `payment_id`: `amount` won of it, or what is left of it when
    /// `None`.
    async fn cancel(
        &self,
        payment_id: &str,
        amount: Option<i64>,
        reason: &str,
    ) -> Result<(), GatewayError>;
}
