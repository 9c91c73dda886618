//! An order's life after the buyer asked for it: placement (through the batching writer in
//! [`super::placement`]), reads, cancellation (with a refund once paid), purchase
//! confirmation, and the deadlines the clock enforces — expiring unpaid holds and
//! confirming purchases nobody confirmed (DESIGN §3). Payment is in [`super::payments`].

use super::error::{require, AppError, AppResult};
use super::payments::Payments;
use super::placement::request::{order_request, OrderInput};
use super::placement::{Placed, Placement};
use crate::clock::SharedClock;
use crate::domain::fulfilment::PartnerOrderStatus;
use crate::domain::order::CancelReason;
use crate::domain::{Actor, IdempotencyKey, OrderStatus, Role, Timestamp};
use crate::events::EventSync;
use crate::metrics::{Metrics, ReasonLabels, TransitionLabels};
use crate::store::{
    OrderRecord, Page, PageRequest, Store, StoreError, TicketOutcome, TicketRecord,
    TransitionOutcome,
};
use std::future::Future;
use std::sync::Arc;

/// The sweeper's transitions, as `sweeper_failures_total` labels them.
const EXPIRE: &str = "expire";
const CONFIRM: &str = "confirm";
/// A sweeper pass reads this many times its `limit` of due orders, so that orders whose
/// transition keeps failing do not fill its batch ([`Orders::sweep_each`]).
const DUE_LOOKAHEAD: i64 = 2;

pub struct Orders {
    pub store: Arc<dyn Store>,
    pub placement: Placement,
    pub payments: Arc<Payments>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub events: EventSync,
}

/// Longer than any ticket id: not looked up.
const MAX_TICKET_ID: usize = 64;

/// A waiting-room ticket as its buyer follows it.
pub struct TicketInfo {
    pub ticket: TicketRecord,
    /// 1 = next to be admitted; 0 once admitted.
    pub position: u64,
    /// The order, once placed (or replayed).
    pub order: Option<OrderRecord>,
}

/// Who confirmed a purchase, as the `orders_confirmed_total` metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmedBy {
    Buyer,
    Admin,
    /// The sweeper, `auto_confirm_after_secs` after the last delivery.
    Auto,
}

impl ConfirmedBy {
    fn as_str(self) -> &'static str {
        match self {
            ConfirmedBy::Buyer => "buyer",
            ConfirmedBy::Admin => "admin",
            ConfirmedBy::Auto => "auto",
        }
    }
}

impl Orders {
    /// Places a buyer's order: decided now by a writer, or queued in the waiting room.
    pub async fn place(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        input: &OrderInput,
    ) -> AppResult<Placed> {
        require(actor, &[Role::Buyer])?;
        let request = order_request(actor.id, key, input)?;
        Ok(self.placement.place(request).await?)
    }

    /// A waiting-room ticket of the caller's (anyone else's is "not found"), with its
    /// position in line and, once placed, its order.
    pub async fn ticket(&self, actor: &Actor, id: &str) -> AppResult<TicketInfo> {
        let room = self.placement.waiting_room();
        if id.len() > MAX_TICKET_ID {
            return Err(AppError::not_found("ticket"));
        }
        let ticket = room
            .ticket(id)
            .await?
            .filter(|t| t.request.user_id == actor.id)
            .ok_or_else(|| AppError::not_found("ticket"))?;
        let order = match &ticket.outcome {
            Some(TicketOutcome::Placed { order_id } | TicketOutcome::Replayed { order_id }) => {
                self.store.order(*order_id).await?
            }
            _ => None,
        };
        Ok(TicketInfo {
            position: room.position(&ticket),
            ticket,
            order,
        })
    }

    /// The order if the caller may see it; another buyer's order is "not found", so ids
    /// leak nothing.
    pub async fn visible(&self, actor: &Actor, id: i64) -> AppResult<OrderRecord> {
        self.store
            .order(id)
            .await?
            .filter(|o| actor.may_see(o.user_id))
            .ok_or_else(|| AppError::not_found("order"))
    }

    /// The caller's orders, newest first; every order for an admin.
    pub async fn list(&self, actor: &Actor, page: PageRequest) -> AppResult<Page<OrderRecord>> {
        let owner = (!actor.is_admin()).then_some(actor.id);
        Ok(self.store.list_orders(owner, page).await?)
    }

    /// Cancels a pending order (its holds are released) or refunds a paid one (stock
    /// returned, money given back through the gateway).
    pub async fn cancel(&self, actor: &Actor, id: i64) -> AppResult<OrderRecord> {
        let order = self.visible(actor, id).await?;
        if !matches!(
            order.status,
            OrderStatus::PendingPayment | OrderStatus::Paid
        ) {
            return Err(AppError::OrderNotCancellable);
        }
        if shipped(&order) {
            return Err(AppError::OrderAlreadyShipped);
        }
        // The transition comes first: exactly one caller can move an order out of `paid`,
        // so the money goes back at most once, and never for an order a confirm got to
        // first.
        let outcome = self
            .store
            .cancel_order(id, CancelReason::Requested, self.clock.now())
            .await?;
        match outcome {
            TransitionOutcome::Done(order) => {
                self.metrics.order_points(order.status, order.points_used);
                let reason = if order.status == OrderStatus::Refunded {
                    self.payments.refund(&order).await;
                    "refunded"
                } else {
                    "requested"
                };
                self.count_cancelled(reason);
                self.events.caught_up().await;
                Ok(order)
            }
            TransitionOutcome::NotFound => Err(AppError::not_found("order")),
            // A part shipped since the order was read: the store refused under its lock.
            TransitionOutcome::Refused(order) if shipped(&order) => {
                Err(AppError::OrderAlreadyShipped)
            }
            TransitionOutcome::Refused(_) => Err(AppError::OrderNotCancellable),
        }
    }

    /// Confirms the purchase of a paid order whose partner orders are all delivered (or
    /// cancelled), for its buyer or an admin.
    pub async fn confirm(&self, actor: &Actor, id: i64) -> AppResult<OrderRecord> {
        let order = self.visible(actor, id).await?;
        let by = if order.user_id == actor.id {
            ConfirmedBy::Buyer
        } else {
            ConfirmedBy::Admin
        };
        // The store decides from the order's state in its own transaction, so a
        // confirmation racing the sweeper's (or a refund) happens at most once.
        match self.store.confirm_order(id, self.clock.now()).await? {
            TransitionOutcome::Done(order) => {
                self.count_confirmed(by);
                self.events.wake();
                Ok(order)
            }
            TransitionOutcome::NotFound => Err(AppError::not_found("order")),
            TransitionOutcome::Refused(order) if order.status == OrderStatus::Paid => {
                Err(AppError::OrderNotDelivered)
            }
            TransitionOutcome::Refused(_) => Err(AppError::OrderNotConfirmable),
        }
    }

    /// Cancels up to `limit` pending orders whose `pay_by` passed by `now`, releasing their
    /// holds. Safe on several nodes at once: each transition re-checks the order's state
    /// and deadline in its own transaction. An order whose transition fails is stepped
    /// over ([`Orders::sweep_each`]).
    pub async fn expire_due(&self, now: Timestamp, limit: i64) -> Result<usize, StoreError> {
        let due = self.store.due_orders(now, lookahead(limit)).await?;
        let expired = self
            .sweep_each(EXPIRE, due, limit, |order_id| async move {
                let outcome = self
                    .store
                    .cancel_order(order_id, CancelReason::Expired, now)
                    .await?;
                let TransitionOutcome::Done(order) = outcome else {
                    return Ok(false);
                };
                self.metrics.order_points(order.status, order.points_used);
                self.metrics.holds_expired.inc();
                self.count_cancelled("expired");
                Ok(true)
            })
            .await?;
        if expired > 0 {
            tracing::info!(expired, "released holds of unpaid orders");
        }
        Ok(expired)
    }

    /// Confirms up to `limit` paid orders whose last partner order was delivered at least
    /// `after_secs` before `now` (one query finds them all). An order the buyer confirmed,
    /// or that was refunded, since it was listed is refused and skipped; one whose
    /// transition fails is stepped over ([`Orders::sweep_each`]).
    pub async fn confirm_due(
        &self,
        now: Timestamp,
        after_secs: u64,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let cutoff = now.minus_secs(after_secs);
        let due = self
            .store
            .due_confirmations(cutoff, lookahead(limit))
            .await?;
        let confirmed = self
            .sweep_each(CONFIRM, due, limit, |order_id| async move {
                let outcome = self.store.confirm_order(order_id, now).await?;
                let done = matches!(outcome, TransitionOutcome::Done(_));
                if done {
                    self.count_confirmed(ConfirmedBy::Auto);
                }
                Ok(done)
            })
            .await?;
        if confirmed > 0 {
            tracing::info!(confirmed, "confirmed purchases automatically");
        }
        Ok(confirmed)
    }

    /// Takes the due orders in `due` (oldest first) through `step`, each in its own
    /// transaction, until `limit` of them went through (`step` says whether the order
    /// moved, or was refused because it no longer needed to); returns how many moved.
    ///
    /// One order whose transition fails (a row the database refuses, a ledger that no
    /// longer adds up) must not hold back the orders behind it: it is logged with its id and
    /// counted in `sweeper_failures_total`, once per pass, and the pass goes on. It does
    /// not take a place of the `limit` either, and `due` holds [`lookahead`] of them, so up
    /// to `limit` such orders at the head of the list never starve the rest. An
    /// unreachable database would fail every order alike: that ends the pass as an error.
    async fn sweep_each<F, Fut>(
        &self,
        transition: &'static str,
        due: Vec<i64>,
        limit: i64,
        step: F,
    ) -> Result<usize, StoreError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<bool, StoreError>>,
    {
        let (mut moved, mut through) = (0, 0);
        for order_id in due {
            if through >= limit {
                break;
            }
            match step(order_id).await {
                Ok(done) => {
                    through += 1;
                    moved += usize::from(done);
                }
                Err(error @ StoreError::Unavailable(_)) => return Err(error),
                Err(error) => {
                    tracing::warn!(
                        order_id,
                        transition,
                        error = %error,
                        "a due order's transition failed; skipped until the next pass"
                    );
                    self.metrics
                        .sweeper_failures
                        .get_or_create(&TransitionLabels { transition })
                        .inc();
                }
            }
        }
        Ok(moved)
    }

    fn count_cancelled(&self, reason: &str) {
        self.metrics
            .orders_cancelled
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    fn count_confirmed(&self, by: ConfirmedBy) {
        self.metrics
            .orders_confirmed
            .get_or_create(&ReasonLabels {
                reason: by.as_str().into(),
            })
            .inc();
    }
}

/// How many due orders a pass of `limit` reads.
fn lookahead(limit: i64) -> i64 {
    limit.saturating_mul(DUE_LOOKAHEAD)
}

/// Whether a part of a paid order has left with a carrier: then the buyer can no longer
/// cancel the order (its sellers may still cancel the parts that have not shipped).
fn shipped(order: &OrderRecord) -> bool {
    order.status == OrderStatus::Paid
        && order.partner_orders.iter().any(|p| {
            matches!(
                p.status,
                PartnerOrderStatus::Shipped | PartnerOrderStatus::Delivered
            )
        })
}
