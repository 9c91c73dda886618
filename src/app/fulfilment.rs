//! What a seller does after payment (DESIGN §3): prepare, ship and deliver each partner
//! order of their partner, and list the partner's orders. Admins may do it for any
//! partner. The buyer follows along on the order (`GET /orders/{id}`, the live streams)
//! and may confirm the purchase once every part is delivered (`app::orders`).

use super::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::fulfilment::{Advance, PartnerOrderStatus, Shipment};
use crate::domain::{Actor, Role};
use crate::events::EventSync;
use crate::metrics::{Metrics, StepLabels};
use crate::store::{FulfilmentOutcome, Page, PageRequest, PartnerOrderRecord, Store};
use std::sync::Arc;

pub struct Fulfilment {
    pub store: Arc<dyn Store>,
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
