//! Waitlist offers (issue 3, item 5). When units of a product come back (inbound, a
//! cancelled or expired order, an adjustment: any `stock.changed` with `available > 0`),
//! the first buyer in line is offered them: an order is placed for that buyer through the
//! same store path as any order (`place_batch`), so stock, purchase limits and the ledger
//! behave exactly as for any order, with the waitlist's own payment deadline
//! (`waitlist_offer_ttl_secs`). Then the next in line, while stock remains.
//!
//! Exactly once, on any number of nodes: every node runs this worker, and two nodes may
//! offer the same entry at the same moment. The offer's idempotency key is derived from
//! the entry (`waitlist-{entry_id}`), so `UNIQUE (user_id, idempotency_key)` lets one order
//! exist per entry — the loser gets that order back as `Replayed` — and linking the entry
//! to its order is a conditional write on `status = 'waiting'`, so one node announces it.
//!
//! An offer ends when its order leaves `pending_payment`: paid → `fulfilled`; cancelled or
//! expired → `lapsed`. The released units then raise their own `stock.changed`, which
//! passes them to the next in line. The dispatcher wakes this node's job on those events
//! ([`Signal`]); a slow timer (`waitlist_interval_ms`, `jobs::waitlist`) repeats everything
//! as a safety net, for events that reached no running node.

use super::signal::Signal;
use crate::clock::SharedClock;
use crate::domain::allocation::{Line, OrderRequest, Rejection};
use crate::domain::order::CancelReason;
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::{DomainError, Quantity, Timestamp};
use crate::events::EventSync;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{
    OrderRecord, PlaceOutcome, Store, StoreError, TransitionOutcome, WaitlistEntryRecord,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Offers made for one product in one pass, at most (each is one placement transaction).
const OFFERS_PER_PRODUCT_MAX: usize = 1000;
/// Products the safety-net pass looks at.
const PRODUCTS_PER_PASS_MAX: i64 = 1000;
/// Offers settled (lapsed or fulfilled) per pass.
const SETTLE_BATCH_MAX: i64 = 1000;
/// Tries of an offer that keeps losing an idempotency race to another node (PostgreSQL);
/// the retry finds the winner's order and links it.
const IDEMPOTENCY_RACE_ATTEMPTS: u32 = 3;

/// The idempotency key of the offer made to waitlist entry `entry_id`. A client could send
/// the same key for its own order, but not the same request hash (see [`offer_request`]):
/// allocation then refuses the offer as an idempotency mismatch and that buyer alone is
/// skipped.
pub fn offer_key(entry_id: i64) -> String {
    format!("waitlist-{entry_id}")
}

/// The order request of the offer to `entry`. Its hash covers the entry id, which no
/// request body sent to `POST /orders` can produce.
pub fn offer_request(entry: &WaitlistEntryRecord) -> Result<OrderRequest, DomainError> {
    let quantity = Quantity::new("quantity", entry.quantity)?;
    let canonical = format!(
        "waitlist:{}:{}x{}",
        entry.id, entry.product_id, entry.quantity
    );
    let digest = Sha256::digest(canonical.as_bytes());
    Ok(OrderRequest {
        user_id: entry.user_id,
        idempotency_key: offer_key(entry.id),
        request_hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
        lines: vec![Line {
            product_id: entry.product_id,
            quantity,
        }],
        coupon_id: None,
        points: 0,
    })
}

/// What one pass did on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub offered: usize,
    pub skipped: usize,
    /// Offers that ended (lapsed or fulfilled).
    pub settled: usize,
}

/// What became of one attempt to offer units to the first in line.
enum Attempt {
    Offered,
    Skipped,
    /// Nothing for anyone in this line now (out of stock, not released yet).
    Stop,
    /// The entry was no longer waiting (another node, or the buyer, changed it first).
    Gone,
}

/// Makes and settles the offers of this node (run by `jobs::waitlist`).
pub struct Offers {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub signal: Arc<Signal>,
    /// Woken after a change, so its events reach streams at once.
    pub events: EventSync,
    pub offer_ttl_secs: u64,
}

impl Offers {
    /// Settles ended offers, then offers returned units, for the products the dispatcher
    /// named — or, when `full`, for every product with a line and available stock. One
    /// failing step does not starve the others; the first error is returned.
    pub async fn pass(&self, full: bool) -> Result<Pass, StoreError> {
        let (signalled, orders_changed) = self.signal.take();
        let mut pass = Pass::default();
        let mut failure = None;
        if full || orders_changed {
            match self.settle().await {
                Ok(settled) => pass.settled = settled,
                Err(e) => failure = Some(e),
            }
        }
        // Most products the dispatcher names have no line: one read drops them all.
        let mut products = BTreeSet::new();
        if !signalled.is_empty() {
            let ids: Vec<i64> = signalled.into_iter().collect();
            match self.store.products_with_line(&ids).await {
                Ok(lined) => products.extend(lined),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if full {
            let products_due = self
                .store
                .products_to_offer(self.clock.now(), PRODUCTS_PER_PASS_MAX);
            match products_due.await {
                Ok(ids) => products.extend(ids),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        for product_id in products {
            if let Err(e) = self.offer_product(product_id, &mut pass).await {
                tracing::warn!(product_id, error = %e, "waitlist offers failed");
                failure = failure.or(Some(e));
            }
        }
        if pass != Pass::default() {
            self.events.wake();
        }
        failure.map_or(Ok(pass), Err)
    }

    /// Ends the offers whose order was paid (fulfilled) or cancelled/expired (lapsed).
    async fn settle(&self) -> Result<usize, StoreError> {
        let settled = self
            .store
            .settle_offers(SETTLE_BATCH_MAX, self.clock.now())
            .await?;
        for entry in &settled {
            if entry.status == WaitlistStatus::Lapsed {
                self.metrics.waitlist_lapses.inc();
            }
            tracing::info!(
                entry_id = entry.id,
                order_id = entry.order_id,
                status = entry.status.as_str(),
                "waitlist offer ended"
            );
        }
        Ok(settled.len())
    }

    /// Offers the product's available units down its line, first come first served.
    async fn offer_product(&self, product_id: i64, pass: &mut Pass) -> Result<(), StoreError> {
        for _ in 0..OFFERS_PER_PRODUCT_MAX {
            let Some(entry) = self.store.next_waiting(product_id).await? else {
                return Ok(());
            };
            match self.offer(&entry).await? {
                Attempt::Offered => pass.offered += 1,
                Attempt::Skipped => pass.skipped += 1,
                Attempt::Stop => return Ok(()),
                Attempt::Gone => {}
            }
        }
        Ok(())
    }

    async fn offer(&self, entry: &WaitlistEntryRecord) -> Result<Attempt, StoreError> {
        let now = self.clock.now();
        let request = match offer_request(entry) {
            Ok(request) => request,
            // The table's CHECK keeps quantity positive; a value past MAX_QUANTITY could
            // only be written behind the API's back.
            Err(e) => {
                tracing::error!(entry_id = entry.id, error = %e, "unplaceable waitlist entry");
                return self.skip(entry, "validation_failed", now).await;
            }
        };
        let (order, placed) = match self.place(&request, now).await? {
            PlaceOutcome::Placed(order) => (order, true),
            PlaceOutcome::Replayed(order) => (order, false),
            // Reasons that hold for everyone in line: wait for the next stock.changed (or,
            // for a product not released yet, the safety-net pass after its release).
            PlaceOutcome::Rejected(
                Rejection::OutOfStock { .. } | Rejection::NotReleased { .. },
            ) => return Ok(Attempt::Stop),
            PlaceOutcome::Rejected(rejection) => {
                return self.skip(entry, rejection.code(), now).await
            }
        };
        if placed {
            self.metrics.orders_placed.inc();
        }
        self.link(entry, &order, placed, now).await
    }

    /// Places the offer's order in its own transaction, with the waitlist's deadline.
    async fn place(
        &self,
        request: &OrderRequest,
        now: Timestamp,
    ) -> Result<PlaceOutcome, StoreError> {
        let pay_by = now.plus_secs(self.offer_ttl_secs);
        let mut attempt = 1;
        loop {
            let result = self
                .store
                .place_batch(std::slice::from_ref(request), pay_by, now)
                .await;
            match result {
                Err(StoreError::Conflict("idempotency_race"))
                    if attempt < IDEMPOTENCY_RACE_ATTEMPTS =>
                {
                    attempt += 1
                }
                Ok(mut result) => {
                    return result
                        .outcomes
                        .pop()
                        .ok_or_else(|| StoreError::Corrupt("placement without outcome".into()))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Links the entry to its offer's order. Normally `waiting → offered`; an order found
    /// already paid or cancelled (linked late) settles the entry at once.
    async fn link(
        &self,
        entry: &WaitlistEntryRecord,
        order: &OrderRecord,
        placed: bool,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        let status = WaitlistStatus::for_offer(order.status);
        let linked = self
            .store
            .link_offer(entry.id, order.id, status, order.pay_by, now)
            .await?;
        let Some(linked) = linked else {
            if placed {
                self.release_orphan(entry.id, order).await?;
            }
            return Ok(Attempt::Gone);
        };
        if linked.status == WaitlistStatus::Offered {
            self.metrics.waitlist_offers.inc();
        } else if linked.status == WaitlistStatus::Lapsed {
            self.metrics.waitlist_lapses.inc();
        }
        tracing::info!(
            entry_id = entry.id,
            product_id = entry.product_id,
            user_id = entry.user_id,
            order_id = order.id,
            status = linked.status.as_str(),
            "waitlist offer made"
        );
        Ok(Attempt::Offered)
    }

    /// We placed an order for an entry that stopped waiting meanwhile (the buyer left, or it
    /// was skipped). Unless the entry holds this very order (another node linked it), the
    /// order is nobody's offer: cancel it, releasing its units to the line again.
    async fn release_orphan(&self, entry_id: i64, order: &OrderRecord) -> Result<(), StoreError> {
        let entry = self.store.waitlist_entry(entry_id).await?;
        if entry.and_then(|e| e.order_id) == Some(order.id) {
            return Ok(());
        }
        let outcome = self
            .store
            .cancel_order(order.id, CancelReason::Requested, self.clock.now())
            .await?;
        if let TransitionOutcome::Done(_) = outcome {
            tracing::info!(
                entry_id,
                order_id = order.id,
                "cancelled an offer nobody waits for"
            );
            self.metrics
                .orders_cancelled
                .get_or_create(&ReasonLabels {
                    reason: "waitlist_left".into(),
                })
                .inc();
        }
        Ok(())
    }

    async fn skip(
        &self,
        entry: &WaitlistEntryRecord,
        reason: &'static str,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        if self
            .store
            .skip_waiting(entry.id, reason, now)
            .await?
            .is_none()
        {
            return Ok(Attempt::Gone);
        }
        self.metrics
            .waitlist_skips
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
        tracing::info!(
            entry_id = entry.id,
            user_id = entry.user_id,
            reason,
            "waitlist buyer skipped"
        );
        Ok(Attempt::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, quantity: i64) -> WaitlistEntryRecord {
        WaitlistEntryRecord {
            id,
            product_id: 7,
            user_id: 3,
            quantity,
            status: WaitlistStatus::Waiting,
            order_id: None,
            position: Some(1),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn an_offer_is_keyed_by_its_entry() {
        let a = offer_request(&entry(1, 2)).unwrap();
        assert_eq!(a.idempotency_key, "waitlist-1");
        assert_eq!((a.user_id, a.lines.len()), (3, 1));
        assert_eq!(a.lines[0].quantity.get(), 2);
        // Same entry, same request: a second node's attempt replays the first's order.
        assert_eq!(
            a.request_hash,
            offer_request(&entry(1, 2)).unwrap().request_hash
        );
        assert_ne!(
            a.request_hash,
            offer_request(&entry(2, 2)).unwrap().request_hash
        );
        assert!(offer_request(&entry(1, 0)).is_err());
    }
}
