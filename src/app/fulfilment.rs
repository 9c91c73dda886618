//! What a seller does after payment (DESIGN §3): prepare, ship and deliver each partner
//! order of their partner, cancel one before it ships or take one back after the purchase
//! was confirmed, and list the partner's orders. Admins may do it for any partner. The
//! buyer follows along on the order (`GET /orders/{id}`, the live streams) and may confirm
//! the purchase once every part is delivered (`app::orders`).

use super::error::{require, AppError, AppResult};
use super::payments::Payments;
use crate::clock::SharedClock;
use crate::domain::fulfilment::{Advance, CancelNote, PartnerOrderStatus, Shipment};
use crate::domain::{Actor, Role};
use crate::events::EventSync;
use crate::metrics::{Metrics, StepLabels};
use crate::store::{
    FulfilmentOutcome, OrderRecord, Page, PageRequest, PartialCancelOutcome, PartnerOrderRecord,
    Store,
};
use std::sync::Arc;

pub struct Fulfilment {
    pub store: Arc<dyn Store>,
    /// Gives a cancelled or returned part's share back through the gateway.
    pub payments: Arc<Payments>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub events: EventSync,
}

/// A seller's step as asked for, before validation.
pub enum StepInput<'a> {
    Prepare,
    Ship {
        carrier: &'a str,
        tracking_number: &'a str,
    },
    Deliver,
}

impl Fulfilment {
    /// Moves one partner order a step forward. Another partner's order is "not found", so
    /// ids leak nothing; a buyer is refused outright. A step its status does not allow is
    /// `InvalidTransition`, and changes nothing.
    pub async fn advance(
        &self,
        actor: &Actor,
        id: i64,
        input: StepInput<'_>,
    ) -> AppResult<PartnerOrderRecord> {
        self.managed(actor, id).await?;
        let step = match input {
            StepInput::Prepare => Advance::Prepare,
            StepInput::Ship {
                carrier,
                tracking_number,
            } => Advance::Ship(Shipment::new(carrier, tracking_number)?),
            StepInput::Deliver => Advance::Deliver,
        };
        let outcome = self
            .store
            .advance_partner_order(id, &step, self.clock.now())
            .await?;
        match outcome {
            FulfilmentOutcome::Done(partner_order) => {
                self.metrics
                    .partner_orders_advanced
                    .get_or_create(&StepLabels {
                        step: step.name().into(),
                    })
                    .inc();
                // The buyer's live streams hear of it at once.
                self.events.wake();
                Ok(partner_order)
            }
            FulfilmentOutcome::NotFound => Err(AppError::not_found("partner order")),
            FulfilmentOutcome::Refused(current) => Err(AppError::InvalidTransition(format!(
                "partner order {id} is {}: only a {} partner order can {}",
                current.status.as_str(),
                step.change().0.as_str(),
                step.name()
            ))),
        }
    }

    /// Cancels a partner order before it ships, for its partner's sellers and admins: the
    /// store returns its stock, refunds its points share and books its `payable` in one
    /// transaction (the whole order is refunded when it was the last part left); then the
    /// money goes back through the gateway — a failure there is retried from
    /// `payment.refund_failed`, never undoing the books. Shipped, delivered or already
    /// cancelled parts are `InvalidTransition`, and nothing changes.
    pub async fn cancel(
        &self,
        actor: &Actor,
        id: i64,
        reason: &str,
    ) -> AppResult<(PartnerOrderRecord, OrderRecord)> {
        self.managed(actor, id).await?;
        let note = CancelNote::new(reason)?;
        let outcome = self
            .store
            .cancel_partner_order(id, note.as_str(), self.clock.now())
            .await?;
        match outcome {
            PartialCancelOutcome::Done {
                partner_order,
                order,
            } => {
                let what = "the share of a cancelled partner order";
                self.payments
                    .refund_amount(order.id, partner_order.payable, what)
                    .await;
                self.metrics
                    .partner_orders_advanced
                    .get_or_create(&StepLabels {
                        step: "cancel".into(),
                    })
                    .inc();
                self.events.wake();
                Ok((partner_order, order))
            }
            PartialCancelOutcome::NotFound => Err(AppError::not_found("partner order")),
            PartialCancelOutcome::Refused(current) => Err(AppError::InvalidTransition(format!(
                "partner order {id} is {}: only a paid or preparing partner order can be cancelled",
                current.status.as_str()
            ))),
        }
    }

    /// Takes back a partner order whose purchase was confirmed (a return), for its
    /// partner's sellers and admins: the store refunds its points share, books its
    /// `payable`, negates its sale in the seller's settlement entries and takes back its
    /// share of the points the purchase earned, in one transaction; the order stays
    /// confirmed. Then the money goes back through the gateway exactly as for a cancelled
    /// part — a failure there is retried from `payment.refund_failed`, never undoing the
    /// books. Any part not `confirmed` is `InvalidTransition`, and nothing changes.
    ///
    /// No stock moves: the goods come back to the seller, who restocks them through the
    /// stock API if they are fit to sell again.
    pub async fn return_part(
        &self,
        actor: &Actor,
        id: i64,
        reason: &str,
    ) -> AppResult<PartnerOrderRecord> {
        self.managed(actor, id).await?;
        let note = CancelNote::new(reason)?;
        let outcome = self
            .store
            .return_partner_order(id, note.as_str(), self.clock.now())
            .await?;
        match outcome {
            FulfilmentOutcome::Done(partner_order) => {
                let what = "the share of a returned partner order";
                self.payments
                    .refund_amount(partner_order.order_id, partner_order.payable, what)
                    .await;
                self.metrics
                    .partner_orders_advanced
                    .get_or_create(&StepLabels {
                        step: "return".into(),
                    })
                    .inc();
                self.events.wake();
                Ok(partner_order)
            }
            FulfilmentOutcome::NotFound => Err(AppError::not_found("partner order")),
            FulfilmentOutcome::Refused(current) => Err(AppError::InvalidTransition(format!(
                "partner order {id} is {}: only a confirmed partner order can be returned",
                current.status.as_str()
            ))),
        }
    }

    /// The partner's orders, newest first, for its sellers and admins; only those in
    /// `status` when given.
    pub async fn partner_orders(
        &self,
        actor: &Actor,
        partner_id: i64,
        status: Option<PartnerOrderStatus>,
        page: PageRequest,
    ) -> AppResult<Page<PartnerOrderRecord>> {
        require(actor, &[Role::Seller, Role::Admin])?;
        if !actor.may_manage_partner(partner_id) {
            return Err(AppError::Forbidden);
        }
        // A seller's own partner exists; an admin may name any id.
        if actor.is_admin() && self.store.partner(partner_id).await?.is_none() {
            return Err(AppError::not_found("partner"));
        }
        Ok(self.store.partner_orders(partner_id, status, page).await?)
    }

    /// A partner order the caller may move: 403 for buyers, 404 when it does not exist or
    /// belongs to another partner.
    async fn managed(&self, actor: &Actor, id: i64) -> AppResult<PartnerOrderRecord> {
        require(actor, &[Role::Seller, Role::Admin])?;
        self.store
            .partner_order(id)
            .await?
            .filter(|p| actor.may_manage_partner(p.partner_id))
            .ok_or_else(|| AppError::not_found("partner order"))
    }
}
