//! A gateway simulator for the embedded default and tests: it moves no money.

use super::{GatewayError, GatewayPayment, PaymentGateway, CURRENCY, STATUS_FAILED};
use async_trait::async_trait;

/// A gateway simulator for the embedded default and tests — it moves no money. Every
/// payment id is "paid" with exactly the amount the order expects, except one that starts
/// with `decline` (failed, so a client can exercise the unhappy path) or an amount out of
/// range. Cancels always succeed.
pub struct SimulatedGateway;

pub const SIMULATED_DECLINE_PREFIX: &str = "decline";

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn payment(
        &self,
        payment_id: &str,
        expected_amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        let in_range = (0..=crate::domain::values::MAX_WON).contains(&expected_amount);
        if payment_id.starts_with(SIMULATED_DECLINE_PREFIX) || !in_range {
            return Ok(GatewayPayment::NotPaid {
                status: STATUS_FAILED.into(),
            });
        }
        Ok(GatewayPayment::Paid {
            amount: expected_amount,
            currency: CURRENCY.into(),
        })
    }

    async fn cancel(
        &self,
        _payment_id: &str,
        _amount: Option<i64>,
        _reason: &str,
    ) -> Result<(), GatewayError> {
        Ok(())
    }
}
