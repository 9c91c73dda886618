//! A gateway simulator for the embedded default and tests: it moves no money.

use super::{GatewayError, GatewayOutcome, PaymentGateway};
use async_trait::async_trait;

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
