//! Standing in line for a sold-out product: joining, leaving, and the buyer's entries.
//! Offers to the first in line are made by [`super::offers`].

use super::signal::Signal;
use crate::app::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::waitlist::waitlist_quantity;
use crate::domain::{Actor, Role};
use crate::events::EventSync;
use crate::metrics::Metrics;
use crate::store::{JoinOutcome, Page, PageRequest, Store, WaitlistEntryRecord};
use std::sync::Arc;

pub struct Waitlists {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub signal: Arc<Signal>,
    pub events: EventSync,
}

impl Waitlists {
    /// Puts the buyer at the end of the product's line for `quantity` units (1 by default).
    pub async fn join(
        &self,
        actor: &Actor,
        product_id: i64,
        quantity: Option<i64>,
    ) -> AppResult<WaitlistEntryRecord> {
        require(actor, &[Role::Buyer])?;
        let product = self
            .store
            .product(product_id)
            .await?
            .ok_or_else(|| AppError::not_found("product"))?;
        let quantity = waitlist_quantity(quantity, product.max_per_user)?;
        let joined = self
            .store
            .join_waitlist(product_id, actor.id, quantity.get(), self.clock.now())
            .await?;
        match joined {
            JoinOutcome::Joined(entry) => {
                self.metrics.waitlist_joins.inc();
                self.events.wake();
                // Units are there now (the line ahead may want more than there is, or
                // stock came back a moment ago): let the job look rather than wait for its
                // timer.
                if product.on_hand > product.held {
                    self.signal.stock_available(product_id);
                }
                Ok(entry)
            }
            JoinOutcome::UnknownProduct => Err(AppError::not_found("product")),
            JoinOutcome::AlreadyWaitlisted => Err(AppError::AlreadyWaitlisted),
        }
    }

    /// Leaves the line; an offer is given up by cancelling its order instead.
    pub async fn leave(&self, actor: &Actor, product_id: i64) -> AppResult<()> {
        require(actor, &[Role::Buyer])?;
        let left = self
            .store
            .leave_waitlist(product_id, actor.id, self.clock.now())
            .await?;
        match left {
            Some(_) => {
                self.events.wake();
                Ok(())
            }
            None => Err(AppError::NotFound("not waiting for this product".into())),
        }
    }

    /// The caller's entries, newest first.
    pub async fn entries(
        &self,
        actor: &Actor,
        page: PageRequest,
    ) -> AppResult<Page<WaitlistEntryRecord>> {
        Ok(self.store.user_waitlist(actor.id, page).await?)
    }
}
