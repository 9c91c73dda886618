//! The payment gateway boundary. The buyer pays at the gateway and sends us the gateway's
//! `payment_key` and the amount; we ask the gateway to confirm that key for the amount the
//! order says is payable (PortOne/Toss style cross-check) before committing anything.

use async_trait::async_trait;

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

/// A gateway simulator for the embedded default and tests — it moves no money. It checks
/// the amount is positive and within range, and declines any `payment_key` that starts with
/// `decline` so a client can exercise the unhappy path.
pub struct SimulatedGateway;

pub const SIMULATED_DECLINE_PREFIX: &str = "decline";

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn confirm(
        &self,
        payment_key: &str,
        _order_id: i64,
        amount: i64,
    ) -> Result<GatewayOutcome, GatewayError> {
        if payment_key.starts_with(SIMULATED_DECLINE_PREFIX) {
            return Ok(GatewayOutcome::Declined {
                reason: "declined by the simulated gateway".into(),
            });
        }
        if !(0..=crate::domain::values::MAX_WON).contains(&amount) {
            return Ok(GatewayOutcome::Declined {
                reason: "amount out of range".into(),
            });
        }
        Ok(GatewayOutcome::Approved { amount })
    }

    async fn refund(&self, _order_id: i64, _amount: i64) -> Result<(), GatewayError> {
        Ok(())
    }
}
