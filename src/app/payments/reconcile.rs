//! The reconciler's pass (issue 11): checkouts left open — by a crash between the capture
//! and the commit, a timeout, a lost answer, a buyer who never came back — are resolved
//! from what the gateway says, so that money is never captured without an order, nor an
//! order paid without money:
//! - paid there, and the order can still be paid → the order is paid;
//! - paid there, and the order cannot be paid any more (deadline passed, cancelled) → the
//!   payment is cancelled at the gateway and recorded as voided;
//! - not paid, and the order is no longer payable → the checkout is abandoned;
//! - otherwise it stays open for the next pass.

use super::Payments;
use crate::app::error::{AppError, AppResult};
use crate::domain::{OrderStatus, Timestamp};
use crate::payment::GatewayPayment;
use crate::store::{CheckoutRecord, CheckoutStatus};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileRun {
    pub paid: usize,
    pub voided: usize,
    pub abandoned: usize,
    pub left_open: usize,
    /// Checkouts the gateway could not be asked about (tried again next pass).
    pub failed: usize,
}

impl Payments {
    /// Resolves up to `limit` checkouts open since `cutoff` or before, oldest first.
    pub async fn reconcile(&self, cutoff: Timestamp, limit: i64) -> AppResult<ReconcileRun> {
        let mut run = ReconcileRun::default();
        for checkout in self.store.stale_checkouts(cutoff, limit).await? {
            match self.reconcile_one(&checkout).await {
                Ok(Resolved::Paid) => run.paid += 1,
                Ok(Resolved::Voided) => run.voided += 1,
                Ok(Resolved::Abandoned) => run.abandoned += 1,
                Ok(Resolved::Open) => run.left_open += 1,
                Err(e) => {
                    tracing::warn!(order_id = checkout.order_id, error = %e, "could not reconcile a checkout");
                    run.failed += 1;
                }
            }
        }
        Ok(run)
    }

    async fn reconcile_one(&self, checkout: &CheckoutRecord) -> AppResult<Resolved> {
        let order = self
            .store
            .order(checkout.order_id)
            .await?
            .ok_or_else(|| AppError::not_found("order"))?;
        let now = self.clock.now();
        let payable = order.status == OrderStatus::PendingPayment && order.pay_by > now;
        // The simulator captures nothing on its own: only an unpayable order's checkout
        // has anything to resolve.
        let answer = if self.settings.simulated {
            GatewayPayment::NotPaid {
                status: "SIMULATED".into(),
            }
        } else {
            let asked = self.gateway.payment(&checkout.payment_id, checkout.amount);
            asked.await?
        };
        match answer {
            GatewayPayment::Paid { .. } => {
                let settled = self.act_on(&order, &checkout.payment_id, answer).await;
                match settled {
                    Ok(_) => Ok(Resolved::Paid),
                    Err(AppError::OrderNotPayable | AppError::PaymentAmountMismatch) => {
                        Ok(Resolved::Voided)
                    }
                    Err(e) => Err(e),
                }
            }
            GatewayPayment::NotPaid { .. } | GatewayPayment::NotFound if !payable => {
                let status = CheckoutStatus::Abandoned;
                self.store
                    .resolve_checkout(&checkout.payment_id, status, now)
                    .await?;
                Ok(Resolved::Abandoned)
            }
            GatewayPayment::NotPaid { .. } | GatewayPayment::NotFound => Ok(Resolved::Open),
        }
    }
}

enum Resolved {
    Paid,
    Voided,
    Abandoned,
    Open,
}
