//! Paying an order, and giving money back (issue 11). The buyer asks for a checkout (a
//! payment id bound to the order, recorded before any gateway is asked), pays at the
//! gateway under it, and sends it to `pay`; the webhook and the reconciler arrive at the
//! same place by payment id ([`Payments::settle_paid`]). Whoever comes first asks the
//! gateway what it captured and, only when that is exactly the order's payable amount in
//! won, commits the holds (`OrderStore::mark_paid`, which resolves the checkout in the
//! same transaction); the others are harmless replays. Money captured for an order that
//! can no longer be paid, or of the wrong amount, is given back at once.
//!
//! Refunds are in `refunds.rs`, the reconciler's pass in `reconcile.rs`.

use super::error::{AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::{Actor, DomainError, OrderStatus, Timestamp};
use crate::events::EventSync;
use crate::metrics::{Metrics, ReasonLabels};
use crate::payment::webhook::WebhookSecret;
use crate::payment::{GatewayPayment, PaymentGateway, CURRENCY, STATUS_FAILED};
use crate::store::{
    CheckoutRecord, CheckoutStatus, OrderRecord, PaymentAttempt, PaymentOutcome, Store, StoreError,
    TransitionOutcome,
};
use std::sync::Arc;

mod reconcile;
mod refunds;
mod webhooks;

pub use reconcile::ReconcileRun;
pub use refunds::{REFUND_RETRIER, REFUND_RETRIER_TOPIC};
pub use webhooks::{WebhookDelivery, WebhookOutcome};

pub const MAX_PAYMENT_KEY_BYTES: usize = 200;
/// Random bytes of a payment id (128 bits): unguessable, and never drawn twice.
const PAYMENT_ID_BYTES: usize = 16;

pub struct Payments {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub events: EventSync,
    pub settings: PaymentSettings,
}

/// How payments meet the configured gateway.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// What the browser SDK pays into: the PortOne store id, or `simulated`.
    pub store_id: String,
    /// The simulator moves no money, so nothing is ever captured behind our back: a key
    /// the client made up is taken as the order's checkout (as before checkouts existed),
    /// and the reconciler does not ask it about open checkouts. A real gateway pays only
    /// payment ids issued by `checkout`.
    pub simulated: bool,
    /// What the gateway signs its webhooks with; none for the simulator, which sends none.
    pub webhook_secret: Option<WebhookSecret>,
}

/// What the buyer says they paid.
pub struct PaymentClaim {
    pub payment_key: String,
    pub amount: i64,
}

/// What the browser needs to pay an order at the gateway.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub payment_id: String,
    pub order_id: i64,
    pub amount: i64,
    pub currency: &'static str,
    pub order_name: String,
    pub store_id: String,
    pub pay_by: Timestamp,
}

impl Payments {
    /// The payment id the buyer pays their own pending order under: a new one, or the one
    /// already open for the order, so that asking again never splits a payment in two.
    pub async fn checkout(&self, actor: &Actor, order_id: i64) -> AppResult<Checkout> {
        let order = self.own_order(actor, order_id).await?;
        let now = self.clock.now();
        if order.status != OrderStatus::PendingPayment || order.pay_by <= now {
            return Err(AppError::OrderNotPayable);
        }
        let candidate = format!("pay_{}", crate::auth::random_token(PAYMENT_ID_BYTES));
        let checkout = self
            .store
            .open_checkout(order.id, &candidate, order.payable, now)
            .await?;
        Ok(Checkout {
            payment_id: checkout.payment_id,
            order_id: order.id,
            amount: checkout.amount,
            currency: CURRENCY,
            order_name: format!("Stampede order {}", order.id),
            store_id: self.settings.store_id.clone(),
            pay_by: order.pay_by,
        })
    }

    /// Pays the buyer's own order with the payment id of its checkout, once the gateway
    /// says it captured exactly the order's payable amount. Every refusal after the order
    /// was found is recorded as a payment attempt; paying again with the payment id that
    /// paid the order answers the order as it is.
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
        if self.paid_with(&order, &claim.payment_key).await? {
            return Ok(order);
        }
        if order.status == OrderStatus::PendingPayment && claim.amount != order.payable {
            let detail = format!("claimed {}", claim.amount);
            self.record_failure(
                &order,
                (&claim.payment_key, claim.amount),
                PaymentOutcome::AmountMismatch,
                detail,
            )
            .await?;
            return Err(AppError::PaymentAmountMismatch);
        }
        let checkout = self.bound_checkout(&order, &claim.payment_key).await?;
        self.settle(&order, &checkout).await
    }

    /// The webhook's and the reconciler's way in: pays the order bound to `payment_id` as
    /// `pay` would (the same verification at the gateway, the same commit), or answers it
    /// as it is when that payment already paid it.
    pub async fn settle_paid(&self, payment_id: &str) -> AppResult<OrderRecord> {
        let checkout = self
            .store
            .checkout(payment_id)
            .await?
            .ok_or(AppError::PaymentNotFound)?;
        let order = self
            .store
            .order(checkout.order_id)
            .await?
            .ok_or_else(|| AppError::not_found("order"))?;
        if self.paid_with(&order, payment_id).await? {
            return Ok(order);
        }
        self.settle(&order, &checkout).await
    }

    /// Whether `payment_id` is the payment that paid `order` (a replay).
    async fn paid_with(&self, order: &OrderRecord, payment_id: &str) -> AppResult<bool> {
        if order.status == OrderStatus::PendingPayment || order.paid_at.is_none() {
            return Ok(false);
        }
        let approved = self.store.approved_payment_id(order.id).await?;
        Ok(approved.as_deref() == Some(payment_id))
    }

    /// The checkout `payment_id` stands for, which must be this order's.
    async fn bound_checkout(
        &self,
        order: &OrderRecord,
        payment_id: &str,
    ) -> AppResult<CheckoutRecord> {
        let now = self.clock.now();
        let checkout = if self.settings.simulated {
            let adopted = self
                .store
                .adopt_checkout(order.id, payment_id, order.payable, now);
            adopted.await?
        } else {
            match self.store.checkout(payment_id).await? {
                Some(checkout) => checkout,
                None => {
                    let detail = "no checkout has this payment id".to_owned();
                    self.record_failure(
                        order,
                        (payment_id, order.payable),
                        PaymentOutcome::Declined,
                        detail,
                    )
                    .await?;
                    return Err(AppError::PaymentNotFound);
                }
            }
        };
        if checkout.order_id != order.id {
            return Err(AppError::PaymentKeyReused);
        }
        Ok(checkout)
    }

    /// Asks the gateway about the checkout's payment and acts on the answer.
    async fn settle(
        &self,
        order: &OrderRecord,
        checkout: &CheckoutRecord,
    ) -> AppResult<OrderRecord> {
        let answer = self
            .gateway
            .payment(&checkout.payment_id, order.payable)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "payment gateway call failed"))?;
        self.act_on(order, &checkout.payment_id, answer).await
    }

    /// What the gateway said about `payment_id`, applied to `order`.
    async fn act_on(
        &self,
        order: &OrderRecord,
        payment_id: &str,
        answer: GatewayPayment,
    ) -> AppResult<OrderRecord> {
        match answer {
            GatewayPayment::NotFound => {
                let detail = "unknown to the gateway".to_owned();
                self.record_failure(
                    order,
                    (payment_id, order.payable),
                    PaymentOutcome::Declined,
                    detail,
                )
                .await?;
                Err(AppError::PaymentNotFound)
            }
            GatewayPayment::NotPaid { status } => {
                let declined = status == STATUS_FAILED;
                let detail = format!("gateway status {status}");
                self.record_failure(
                    order,
                    (payment_id, order.payable),
                    PaymentOutcome::Declined,
                    detail,
                )
                .await?;
                Err(if declined {
                    AppError::PaymentDeclined
                } else {
                    AppError::PaymentNotCompleted
                })
            }
            GatewayPayment::Paid { amount, currency }
                if amount != order.payable || currency != CURRENCY =>
            {
                // Captured something else than we sell: give all of it back.
                self.void(
                    order.id,
                    payment_id,
                    amount,
                    "a capture of the wrong amount",
                )
                .await?;
                let detail = format!("gateway captured {amount} {currency}");
                self.record_failure(
                    order,
                    (payment_id, amount),
                    PaymentOutcome::AmountMismatch,
                    detail,
                )
                .await?;
                Err(AppError::PaymentAmountMismatch)
            }
            GatewayPayment::Paid { .. } => self.commit(order, payment_id).await,
        }
    }

    /// The captured payment commits the order's holds, unless its deadline passed or a
    /// cancel won meanwhile: then the capture is voided. When the same payment won the race
    /// (the webhook and the client at once), this is a replay.
    async fn commit(&self, order: &OrderRecord, payment_id: &str) -> AppResult<OrderRecord> {
        let attempt = PaymentAttempt {
            order_id: order.id,
            payment_key: payment_id.to_owned(),
            amount: order.payable,
            outcome: PaymentOutcome::Approved,
            detail: None,
        };
        let outcome = self
            .store
            .mark_paid(order.id, &attempt, self.clock.now())
            .await;
        match outcome {
            Ok(TransitionOutcome::Done(paid)) => {
                self.count(PaymentOutcome::Approved.as_str());
                self.metrics.orders_paid.inc();
                self.metrics.order_points(paid.status, paid.points_used);
                self.events.wake();
                Ok(paid)
            }
            Ok(TransitionOutcome::NotFound) => Err(AppError::not_found("order")),
            Ok(TransitionOutcome::Refused(current))
                if self.paid_with(&current, payment_id).await? =>
            {
                Ok(current)
            }
            Ok(TransitionOutcome::Refused(current)) => {
                let what = "a capture for an unpayable order";
                self.void(current.id, payment_id, order.payable, what)
                    .await?;
                let detail = "order no longer payable".to_owned();
                self.record_failure(
                    &current,
                    (payment_id, order.payable),
                    PaymentOutcome::Voided,
                    detail,
                )
                .await?;
                Err(AppError::OrderNotPayable)
            }
            Err(StoreError::Conflict("payment_key_reused")) => Err(AppError::PaymentKeyReused),
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels the whole of a capture we cannot use and closes its checkout as voided; a
    /// failed cancel goes to the refund retrier with `amount`.
    async fn void(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        what: &str,
    ) -> AppResult<()> {
        self.give_back(order_id, payment_id, None, amount, what)
            .await;
        let now = self.clock.now();
        self.store
            .resolve_checkout(payment_id, CheckoutStatus::Voided, now)
            .await?;
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
        (payment_id, amount): (&str, i64),
        outcome: PaymentOutcome,
        detail: String,
    ) -> AppResult<()> {
        self.count(outcome.as_str());
        let attempt = PaymentAttempt {
            order_id: order.id,
            payment_key: payment_id.to_owned(),
            amount,
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
