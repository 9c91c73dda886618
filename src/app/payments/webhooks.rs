//! PortOne's webhooks (issue 11): `POST /api/v1/payments/portone/webhook`, signed as
//! Standard Webhooks. Nothing in a webhook is believed before its signature is checked
//! (`payment::webhook::verify`, over the raw body), and even then a webhook only says
//! *which* payment to look at: `Transaction.Paid` pays the order through the same
//! verification at the gateway as the buyer's own `pay` ([`Payments::settle_paid`]), so
//! whichever of the two arrives first pays it and the other is a replay.
//! `Transaction.Cancelled` of the payment that paid an order refunds the order in the
//! books (stock, coupon and points returned as for any refund); the money is already back.
//!
//! Each `webhook-id` is processed once: a redelivery is answered `replayed` and changes
//! nothing. A webhook whose processing fails for a reason that may pass (the gateway or the
//! store unavailable) is not recorded and answered 5xx, so PortOne delivers it again.

use super::Payments;
use crate::app::error::{AppError, AppResult};
use crate::domain::order::CancelReason;
use crate::domain::{DomainError, OrderStatus};
use crate::payment::webhook::{self, PortOneWebhook, WebhookHeaders};
use crate::store::TransitionOutcome;

/// One delivery as it arrived: its three Standard Webhooks headers (absent or not text:
/// `None`) and its raw body, which is what was signed.
pub struct WebhookDelivery<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a verified webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// It paid or refunded an order.
    Applied,
    /// Its `webhook-id` was processed before: nothing changed.
    Replayed,
    /// Nothing to do: another store's payment, a type we do not act on, a payment we never
    /// issued, or one already in the state it announces.
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Replayed => "replayed",
            WebhookOutcome::Ignored => "ignored",
        }
    }
}

impl Payments {
    /// Verifies and applies one PortOne webhook delivery.
    pub async fn portone_webhook(
        &self,
        delivery: &WebhookDelivery<'_>,
    ) -> AppResult<WebhookOutcome> {
        let headers = WebhookHeaders {
            id: delivery.id,
            timestamp: delivery.timestamp,
            signature: delivery.signature,
        };
        let body = delivery.body;
        let Some(secret) = &self.settings.webhook_secret else {
            // The simulator has no webhooks: nothing here to sign them.
            return Err(AppError::not_found("webhook endpoint"));
        };
        webhook::verify(secret, &headers, body, self.clock.now()).map_err(|e| {
            tracing::warn!(error = %e, "refused a webhook");
            AppError::InvalidSignature
        })?;
        // `verify` refuses a delivery without its id.
        let webhook_id = headers.id.unwrap_or_default();
        if self.store.webhook_seen(webhook_id).await? {
            return Ok(WebhookOutcome::Replayed);
        }
        let event = PortOneWebhook::parse(body)
            .map_err(|e| DomainError::new("body", format!("not a PortOne webhook: {e}")))?;
        let (event_type, outcome) = match &event {
            PortOneWebhook::Paid {
                payment_id,
                store_id,
            } => (
                "Transaction.Paid",
                self.on_paid(payment_id, store_id).await?,
            ),
            PortOneWebhook::Cancelled {
                payment_id,
                store_id,
            } => (
                "Transaction.Cancelled",
                self.on_cancelled(payment_id, store_id).await?,
            ),
            PortOneWebhook::Other(_) => ("other", WebhookOutcome::Ignored),
        };
        let first = self
            .store
            .record_webhook(webhook_id, event_type, self.clock.now())
            .await?;
        Ok(if first {
            outcome
        } else {
            // Two deliveries of one id at once: both were harmless, one is the replay.
            WebhookOutcome::Replayed
        })
    }

    /// `Transaction.Paid`: the buyer's `pay`, arriving by the gateway. A refusal that will
    /// not change on a redelivery (unknown payment, wrong amount, order no longer payable:
    /// each already handled, money given back where captured) is the webhook's answer; a
    /// failure that may pass is an error, for PortOne to deliver again.
    async fn on_paid(&self, payment_id: &str, store_id: &str) -> AppResult<WebhookOutcome> {
        if store_id != self.settings.store_id {
            return Ok(WebhookOutcome::Ignored);
        }
        let Some(checkout) = self.store.checkout(payment_id).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        let order = self.store.order(checkout.order_id).await?;
        if let Some(order) = &order {
            if self.paid_with(order, payment_id).await? {
                // The buyer's own `pay` (or the reconciler) got there first.
                return Ok(WebhookOutcome::Ignored);
            }
        }
        match self.settle_paid(payment_id).await {
            Ok(_) => Ok(WebhookOutcome::Applied),
            Err(e) if settled_for_good(&e) => {
                tracing::info!(error = %e, "a paid webhook changed nothing");
                Ok(WebhookOutcome::Ignored)
            }
            Err(e) => Err(e),
        }
    }

    /// `Transaction.Cancelled`: the payment that paid an order was cancelled at the gateway
    /// (by an operator in PortOne's console, say). The money is back with the buyer, so the
    /// order is refunded in the books without asking the gateway again.
    async fn on_cancelled(&self, payment_id: &str, store_id: &str) -> AppResult<WebhookOutcome> {
        if store_id != self.settings.store_id {
            return Ok(WebhookOutcome::Ignored);
        }
        let Some(checkout) = self.store.checkout(payment_id).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        let paid_with = self.store.approved_payment_id(checkout.order_id).await?;
        if paid_with.as_deref() != Some(payment_id) {
            return Ok(WebhookOutcome::Ignored);
        }
        let now = self.clock.now();
        let outcome = self
            .store
            .cancel_order(checkout.order_id, CancelReason::GatewayCancelled, now)
            .await?;
        match outcome {
            TransitionOutcome::Done(order) => {
                self.metrics.order_points(order.status, order.points_used);
                self.events.wake();
                Ok(WebhookOutcome::Applied)
            }
            TransitionOutcome::NotFound => Ok(WebhookOutcome::Ignored),
            TransitionOutcome::Refused(order) => {
                // Already refunded or cancelled: nothing to do. Paid with a part shipped,
                // or confirmed: the books cannot follow on their own; an operator must.
                if matches!(order.status, OrderStatus::Paid | OrderStatus::Confirmed) {
                    tracing::error!(
                        order_id = order.id,
                        status = order.status.as_str(),
                        "the gateway cancelled the payment of an order that can no longer be \
                         refunded in the books; reconcile by hand"
                    );
                }
                Ok(WebhookOutcome::Ignored)
            }
        }
    }
}

/// Refusals a redelivery of the same webhook would meet again. Not "not completed": the
/// gateway announced the payment paid, so asking again later may well find it so.
fn settled_for_good(e: &AppError) -> bool {
    matches!(
        e,
        AppError::PaymentNotFound
            | AppError::PaymentDeclined
            | AppError::PaymentAmountMismatch
            | AppError::PaymentKeyReused
            | AppError::OrderNotPayable
    )
}
