//! Paying an order, and giving money back. The buyer pays at the gateway and sends us the
//! gateway's `payment_key` and the amount; the gateway confirms that key for the amount the
//! order says is payable before anything is committed, and only then do the holds commit
//! (`OrderStore::mark_paid`).

use super::error::{AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::events::{self, Event, RefundDue};
use crate::domain::{Actor, DomainError, OrderStatus};
use crate::events::EventSync;
use crate::metrics::{Metrics, ReasonLabels};
use crate::payment::{GatewayOutcome, PaymentGateway};
use crate::store::{OrderRecord, PaymentAttempt, PaymentOutcome, Store, TransitionOutcome};
use std::sync::Arc;

pub const MAX_PAYMENT_KEY_BYTES: usize = 200;

pub struct Payments {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub events: EventSync,
}

/// What the buyer says they paid.
pub struct PaymentClaim {
    pub payment_key: String,
    pub amount: i64,
}

impl Payments {
    /// Pays the buyer's own pending order once the gateway confirms exactly its payable
    /// amount. Every refusal after the order was found is recorded as a payment attempt.
    pub async fn pay(
        &self,
        actor: &Actor,
        order_id: i64,
        claim: &PaymentClaim,
    ) -> AppResult<OrderRecord> {
        if claim.payment_key.is_empty() || claim.payment_key.len() > MAX_PAYMENT_KEY_BYTES {
            return Err(DomainError::new(
                "payment_key",
                format!("must be 1 to {MAX_PAYMENT_KEY_BYTES} bytes"),
            )
            .into());
        }
        let order = self.own_order(actor, order_id).await?;
        if order.status != OrderStatus::PendingPayment || order.pay_by <= self.clock.now() {
            return Err(AppError::OrderNotPayable);
        }
        if claim.amount != order.payable {
            let detail = format!("claimed {}", claim.amount);
            self.record_failure(&order, claim, PaymentOutcome::AmountMismatch, detail)
                .await?;
            return Err(AppError::PaymentAmountMismatch);
        }
        let outcome = self
            .gateway
            .confirm(&claim.payment_key, order.id, order.payable)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "payment gateway unavailable"))?;
        match outcome {
            GatewayOutcome::Declined { reason } => {
                self.record_failure(&order, claim, PaymentOutcome::Declined, reason)
                    .await?;
                Err(AppError::PaymentDeclined)
            }
            GatewayOutcome::Approved { amount } if amount != order.payable => {
                // The gateway captured something else than we sell: give it back.
                self.give_back(order.id, amount, "a capture of the wrong amount")
                    .await;
                let detail = format!("gateway captured {amount}");
                self.record_failure(&order, claim, PaymentOutcome::AmountMismatch, detail)
                    .await?;
                Err(AppError::PaymentAmountMismatch)
            }
            GatewayOutcome::Approved { .. } => self.commit(&order, claim).await,
        }
    }

    /// The captured payment commits the order's holds, unless its deadline passed or a
    /// cancel won meanwhile: then the capture is voided.
    async fn commit(&self, order: &OrderRecord, claim: &PaymentClaim) -> AppResult<OrderRecord> {
        let attempt = PaymentAttempt {
            order_id: order.id,
            payment_key: claim.payment_key.clone(),
            amount: order.payable,
            outcome: PaymentOutcome::Approved,
            detail: None,
        };
        match self
            .store
            .mark_paid(order.id, &attempt, self.clock.now())
            .await?
        {
            TransitionOutcome::Done(paid) => {
                self.count(PaymentOutcome::Approved.as_str());
                self.metrics.orders_paid.inc();
                self.metrics.order_points(paid.status, paid.points_used);
                self.events.wake();
                Ok(paid)
            }
            TransitionOutcome::NotFound => Err(AppError::not_found("order")),
            TransitionOutcome::Refused(_) => {
                self.give_back(order.id, order.payable, "a capture for an unpayable order")
                    .await;
                let detail = "order no longer payable".to_owned();
                self.record_failure(order, claim, PaymentOutcome::Voided, detail)
                    .await?;
                Err(AppError::OrderNotPayable)
            }
        }
    }

    /// Returns a refunded order's money through the gateway. The order is already refunded
    /// in the books (stock returned, `order.refunded` written); a gateway failure is logged
    /// and counted for reconciliation rather than undoing that.
    pub async fn refund(&self, order: &OrderRecord) {
        self.refund_amount(order.id, order.unrefunded(), "a refund")
            .await;
    }

    /// Gives `amount` of a paid order back through the gateway (a refund, or the share of
    /// a cancelled partner order), already booked in the store; nothing for nothing. A
    /// failure goes to the refund retrier (`payment.refund_failed`).
    pub async fn refund_amount(&self, order_id: i64, amount: i64, what: &str) {
        if amount > 0 && self.give_back(order_id, amount, what).await {
            self.count("refunded");
        }
    }

    /// Gives money back through the gateway. A failure is never dropped — the money is the
    /// buyer's: it is logged, counted as `refund_failed`, and written as a
    /// `payment.refund_failed` event, which the refund retrier consumes (with Kafka).
    async fn give_back(&self, order_id: i64, amount: i64, what: &str) -> bool {
        let Err(e) = self.gateway.refund(order_id, amount).await else {
            return true;
        };
        tracing::error!(order_id, amount, error = %e, "could not give back {what}");
        self.count("refund_failed");
        let due = [events::payment_refund_failed(
            order_id,
            amount,
            &e.to_string(),
        )];
        let written = self.store.append_events(None, &due, self.clock.now());
        if let Err(e) = written.await {
            tracing::error!(order_id, amount, error = %e, "could not record the failed refund; reconcile by hand");
        }
        self.events.wake();
        false
    }

    /// The refund retrier's work: asks the gateway again for a refund that failed, and on
    /// success records `payment.refunded` once per `(handler, event id)`. A redelivery
    /// after a success asks the gateway again, which refunds an order once (gateways such
    /// as PortOne cancel by the merchant's order id and refuse a second cancellation).
    pub async fn retry_refund(&self, handler: &str, event: &Event) -> anyhow::Result<()> {
        let due: RefundDue = serde_json::from_str(&event.payload)?;
        self.gateway.refund(due.order_id, due.amount).await?;
        self.count("refunded");
        let done = events::payment_refunded(due.order_id, due.amount);
        self.store
            .append_events(Some((handler, event.id)), &[done], self.clock.now())
            .await?;
        self.events.wake();
        Ok(())
    }

    /// The buyer's own order: another buyer's is "not found" (ids leak nothing), and an
    /// admin may see it but not pay it.
    async fn own_order(&self, actor: &Actor, order_id: i64) -> AppResult<OrderRecord> {
        let order = self
            .store
            .order(order_id)
            .await?
            .filter(|o| actor.may_see(o.user_id))
            .ok_or_else(|| AppError::not_found("order"))?;
        if order.user_id != actor.id {
            return Err(AppError::Forbidden);
        }
        Ok(order)
    }

    async fn record_failure(
        &self,
        order: &OrderRecord,
        claim: &PaymentClaim,
        outcome: PaymentOutcome,
        detail: String,
    ) -> AppResult<()> {
        self.count(outcome.as_str());
        let attempt = PaymentAttempt {
            order_id: order.id,
            payment_key: claim.payment_key.clone(),
            amount: claim.amount,
            outcome,
            detail: Some(detail),
        };
        Ok(self
            .store
            .record_payment(&attempt, self.clock.now())
            .await?)
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .payments
            .get_or_create(&ReasonLabels {
                reason: outcome.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests;
