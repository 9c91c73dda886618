//! The payment gateway boundary. The buyer pays at the gateway and sends us the gateway's
//! `payment_key` and the amount; we ask the gateway to confirm that key for the amount the
//! order says is payable (PortOne/Toss style cross-check) before committing anything.

use async_trait::async_trait;

pub mod breaker;
pub mod simulated;
pub mod webhook;

pub use breaker::{BreakerError, BreakerSettings, CircuitBreaker};
pub use simulated::SimulatedGateway;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// The gateway captured exactly `amount`.
    Approved {
        amount: i64,
    },
    Declined {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct GatewayError(pub String);

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// Confirms the payment identified by `payment_key` for `amount` won.
    async fn confirm(
        &self,
        payment_key: &str,
        order_id: i64,
        amount: i64,
    ) -> Result<GatewayOutcome, GatewayError>;
    /// Gives the money of an order back (refund of a paid order, or a capture we could not
    /// use); gateways such as PortOne cancel by the merchant's order id.
    async fn refund(&self, order_id: i64, amount: i64) -> Result<(), GatewayError>;
}
