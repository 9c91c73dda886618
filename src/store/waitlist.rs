//! The waitlists of sold-out products ([`WaitlistStore`], used by `app::waitlist`), with
//! the rows they read and write.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::events::{self, NewEvent, WaitlistChanged};
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::Timestamp;
use async_trait::async_trait;

/// Every status change is a conditional write on the entry's current status, with its
/// `waitlist.*` event in the same transaction, so two nodes racing on one entry change it
/// once.
#[async_trait]
pub trait WaitlistStore: Send + Sync {
    /// Puts the buyer at the end of the product's line (`waitlist.joined`).
    async fn join_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        quantity: i64,
        now: Timestamp,
    ) -> StoreResult<JoinOutcome>;
    /// `waiting → left` (`waitlist.left`); `None` when the buyer is not waiting.
    async fn leave_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>>;
    /// The buyer's entries, newest first, waiting ones with their position.
    async fn user_waitlist(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<WaitlistEntryRecord>>;
    async fn waitlist_entry(&self, id: i64) -> StoreResult<Option<WaitlistEntryRecord>>;
    /// The product's first waiting entry (lowest id).
    async fn next_waiting(&self, product_id: i64) -> StoreResult<Option<WaitlistEntryRecord>>;
    /// Of `product_ids`, those with at least one waiting entry, ascending: one read for a
    /// whole wake-up (a catalog import names thousands of products, few with a line).
    async fn products_with_line(&self, product_ids: &[i64]) -> StoreResult<Vec<i64>>;
    /// Up to `limit` products, ascending, released by `now`, that have waiting entries and
    /// available stock.
    async fn products_to_offer(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
    /// `waiting → status` (normally `offered`) linked to the offer's `order_id`, with its
    /// event (`pay_by` goes into it); `None`, changing nothing, if the entry is not waiting.
    async fn link_offer(
        &self,
        entry_id: i64,
        order_id: i64,
        status: WaitlistStatus,
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>>;
    /// `waiting → skipped` (`waitlist.skipped` with `reason`); `None` if not waiting.
    async fn skip_waiting(
        &self,
        entry_id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>>;
    /// Moves up to `limit` `offered` entries whose order left `pending_payment` to `lapsed`
    /// (cancelled or expired) or `fulfilled` (paid), with their events; returns them.
    async fn settle_offers(
        &self,
        limit: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<WaitlistEntryRecord>>;
    /// Entries linked to an order that is not that buyer's order of that product and
    /// quantity, or offered/fulfilled without an order.
    async fn waitlist_audit(&self) -> StoreResult<Vec<WaitlistBreach>>;
}

/// One buyer's place in one product's waitlist.
#[derive(Debug, Clone)]
pub struct WaitlistEntryRecord {
    pub id: i64,
    pub product_id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub status: WaitlistStatus,
    /// The offer's order, once offered (kept when the offer lapses or is fulfilled).
    pub order_id: Option<i64>,
    /// 1-based place among the product's waiting entries; `None` unless waiting (and on
    /// rows returned by a status change).
    pub position: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WaitlistEntryRecord {
    /// The event announcing the entry's current status.
    pub fn event(&self, pay_by: Option<Timestamp>, reason: Option<&str>) -> NewEvent {
        events::waitlist_changed(&WaitlistChanged {
            entry_id: self.id,
            product_id: self.product_id,
            user_id: self.user_id,
            quantity: self.quantity,
            status: self.status,
            order_id: self.order_id,
            pay_by,
            reason: reason.map(str::to_owned),
        })
    }
}

#[derive(Debug, Clone)]
pub enum JoinOutcome {
    Joined(WaitlistEntryRecord),
    UnknownProduct,
    /// The buyer already waits for, or holds an offer of, this product.
    AlreadyWaitlisted,
}

/// A waitlist entry whose order is not an order of that buyer for that product and
/// quantity (found by `stampede verify`).
#[derive(Debug, Clone)]
pub struct WaitlistBreach {
    pub entry_id: i64,
    pub user_id: i64,
    pub status: String,
    pub order_id: Option<i64>,
}
