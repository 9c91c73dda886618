//! Giving money back: a refund, the share of a cancelled or returned partner order, or a
//! capture we cannot use. Each cancels the order's payment at the gateway by its payment
//! id, with the amount; a failure is never dropped — it is written as
//! `payment.refund_failed` (with the payment id), which the refund retrier consumes.

use super::Payments;
use crate::domain::events::{self, Event, RefundDue};
use crate::events::message::EventMessage;
use crate::store::{Backlog, DeadLetterRecord, NewDeadLetter, OrderRecord, StoreResult};

/// The refund retrier: the Kafka consumer's handler and, without Kafka, the in-process job
/// (`jobs::refunds`). One name, so that `(handler, event id)` in `processed_events` keeps
/// either from giving back what the other already did.
pub const REFUND_RETRIER: &str = "refund-retrier";
/// The topic of a dead letter the in-process retrier keeps: it read the event from the
/// outbox, not from Kafka, so the letter names the outbox with partition 0 and the event
/// id as its offset (unique per event, so a letter kept twice is one row).
pub const REFUND_RETRIER_TOPIC: &str = "outbox";
/// Characters of the gateway's error kept on a dead letter.
const DEAD_LETTER_ERROR_MAX_CHARS: usize = 2000;

impl Payments {
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
        if amount <= 0 {
            return;
        }
        let payment_id = match self.store.approved_payment_id(order_id).await {
            Ok(Some(payment_id)) => payment_id,
            // Without the payment id nothing can be cancelled now: the retrier looks
            // again (an empty id reads as "unknown").
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(order_id, error = %e, "could not read the order's payment");
                String::new()
            }
        };
        let partial = Some(amount);
        if self
            .give_back(order_id, &payment_id, partial, amount, what)
            .await
        {
            self.count("refunded");
        }
    }

    /// Cancels `cancel` won of `payment_id` (all of it for `None`; `amount` is what that
    /// is, for the record). A failure is logged, counted as `refund_failed`, and written
    /// as a `payment.refund_failed` event for the retrier. `true` when it went through.
    pub(super) async fn give_back(
        &self,
        order_id: i64,
        payment_id: &str,
        cancel: Option<i64>,
        amount: i64,
        what: &str,
    ) -> bool {
        let outcome = if payment_id.is_empty() {
            Err("the order has no approved payment id".to_owned())
        } else {
            let reason = format!("Stampede: {what}");
            let asked = self.gateway.cancel(payment_id, cancel, &reason).await;
            asked.map_err(|e| e.to_string())
        };
        let Err(error) = outcome else {
            return true;
        };
        tracing::error!(order_id, payment_id, amount, error = %error, "could not give back {what}");
        self.count("refund_failed");
        let due = [events::payment_refund_failed(
            order_id, payment_id, amount, &error,
        )];
        let written = self.store.append_events(None, &due, self.clock.now());
        if let Err(e) = written.await {
            tracing::error!(order_id, amount, error = %e, "could not record the failed refund; reconcile by hand");
        }
        self.events.wake();
        false
    }

    /// The refund retrier's work: asks the gateway again to cancel `amount` of the payment
    /// a refund failed on, and on success records `payment.refunded` once per `(handler,
    /// event id)`. A redelivery after a success asks the gateway again: PortOne answers a
    /// second full cancel with "already cancelled", which counts as done; a partial cancel
    /// delivered twice is what the `(handler, event id)` record exists to prevent.
    pub async fn retry_refund(&self, handler: &str, event: &Event) -> anyhow::Result<()> {
        let due: RefundDue = serde_json::from_str(&event.payload)?;
        let payment_id = match due.payment_id.filter(|id| !id.is_empty()) {
            Some(payment_id) => payment_id,
            None => self
                .store
                .approved_payment_id(due.order_id)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("order {} has no approved payment to cancel", due.order_id)
                })?,
        };
        let reason = "Stampede: a refund retried";
        self.gateway
            .cancel(&payment_id, Some(due.amount), reason)
            .await?;
        self.count("refunded");
        let done = events::payment_refunded(due.order_id, Some(&payment_id), due.amount);
        self.store
            .append_events(Some((handler, event.id)), &[done], self.clock.now())
            .await?;
        self.events.wake();
        Ok(())
    }

    /// Failed refunds the retrier has neither given back nor given up on, oldest first, at
    /// most `limit`: the in-process retrier's work when there is no Kafka.
    pub async fn failed_refunds(&self, limit: i64) -> StoreResult<Vec<Event>> {
        self.store
            .unprocessed_events(REFUND_RETRIER, Backlog::PaymentRefundFailed, limit)
            .await
    }

    /// The in-process retrier gives up on a failed refund after `attempts`: it becomes an
    /// open dead letter of [`REFUND_RETRIER`], which the dead-letter job retries and an
    /// operator sees, replays or discards (`/api/v1/admin/dead-letters`). The failed-refund
    /// scan passes it over from then on.
    pub async fn dead_letter_refund(
        &self,
        event: &Event,
        error: &str,
        attempts: u32,
    ) -> StoreResult<DeadLetterRecord> {
        let message = EventMessage::of(event);
        let letter = NewDeadLetter {
            handler: REFUND_RETRIER.to_owned(),
            topic: REFUND_RETRIER_TOPIC.to_owned(),
            partition: 0,
            offset: event.id,
            key: Some(message.key()),
            message: String::from_utf8_lossy(&message.to_json()).into_owned(),
            event_id: Some(event.id),
            error: error.chars().take(DEAD_LETTER_ERROR_MAX_CHARS).collect(),
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            // The refund first failed when the event was written.
            first_failed_at: event.created_at,
        };
        self.store
            .insert_dead_letter(&letter, self.clock.now())
            .await
    }
}
