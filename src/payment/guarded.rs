//! The gateway as the use cases see it: every call to the configured gateway goes through
//! one [`CircuitBreaker`] (seed 002's numbers) with the payment timeout. A failing
//! gateway's calls — timeouts, 5xx, dropped connections — open the breaker, and while it
//! is open calls come back at once as [`GatewayError::Busy`] with the time left, which
//! `pay` answers as `503 payment_gateway_unavailable` with `Retry-After`; the order keeps
//! its deadline. A refusal from a gateway that works (not found, not paid, a 4xx) is an
//! answer, not a failure.

use super::breaker::{BreakerError, CircuitBreaker, CountsAsFailure};
use super::{GatewayError, GatewayPayment, PaymentGateway};
use async_trait::async_trait;
use std::sync::Arc;

impl CountsAsFailure for GatewayError {
    fn is_failure(&self) -> bool {
        matches!(self, GatewayError::Unavailable(_))
    }
}

pub struct GuardedGateway {
    inner: Arc<dyn PaymentGateway>,
    breaker: CircuitBreaker,
}

impl GuardedGateway {
    pub fn new(inner: Arc<dyn PaymentGateway>, breaker: CircuitBreaker) -> GuardedGateway {
        GuardedGateway { inner, breaker }
    }
}

/// The breaker's own refusals as the gateway's errors: open → `Busy`, its timeout →
/// `Unavailable` (what a client timeout is).
fn unguarded(e: BreakerError<GatewayError>) -> GatewayError {
    match e {
        BreakerError::Open { retry_after } => GatewayError::Busy { retry_after },
        BreakerError::Timeout => GatewayError::Unavailable("timed out".into()),
        BreakerError::Inner(e) => e,
    }
}

#[async_trait]
impl PaymentGateway for GuardedGateway {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn payment(
        &self,
        payment_id: &str,
        expected_amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        self.breaker
            .call(|| self.inner.payment(payment_id, expected_amount))
            .await
            .map_err(unguarded)
    }

    async fn cancel(
        &self,
        payment_id: &str,
        amount: Option<i64>,
        reason: &str,
    ) -> Result<(), GatewayError> {
        self.breaker
            .call(|| self.inner.cancel(payment_id, amount, reason))
            .await
            .map_err(unguarded)
    }
}
