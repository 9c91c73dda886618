//! Fulfilment: sellers moving their partner orders `paid → preparing → shipped →
//! delivered` ([`FulfilmentStore`]), cancelling one before it ships or taking one back
//! after the purchase was confirmed, the partner's listing, and what `stampede verify`
//! reads of it. Each backend implements it in its `fulfilment.rs`.

use super::error::StoreResult;
use super::orders::{OrderRecord, PartnerOrderRecord};
use super::page::{Page, PageRequest};
use crate::domain::fulfilment::{Advance, PartnerOrderStatus};
use crate::domain::{OrderStatus, Timestamp};
use async_trait::async_trait;

#[async_trait]
pub trait FulfilmentStore: Send + Sync {
    /// One partner order with its items.
    async fn partner_order(&self, id: i64) -> StoreResult<Option<PartnerOrderRecord>>;
    /// Moves a partner order one step if it is in the step's `from` status, in one
    /// transaction: the conditional update (with the step's time and, when shipping, the
    /// shipment), the order's `delivered_at` once none of its parts is left to deliver,
    /// and the step's `partner_order.*` event. From any other status nothing changes and
    /// the partner order comes back `Refused` as it is.
    async fn advance_partner_order(
        &self,
        id: i64,
        step: &Advance,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome>;
    /// Cancels a partner order before it ships (`paid` or `preparing`), in one
    /// transaction: its stock comes back (a `return` movement per line), its share of the
    /// points goes back to the buyer, a `refunded` payment row books its `payable` for the
    /// gateway, and `partner_order.cancelled` is written. When it was the last part left to
    /// deliver, the order records its last delivery (`sql::MARK_ORDER_DELIVERED`); when it
    /// was the last part not cancelled, the order itself becomes `refunded` (the coupon is
    /// issued again, `order.refunded`). From any other status nothing changes and the
    /// partner order comes back `Refused` as it is.
    async fn cancel_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<PartialCancelOutcome>;
    /// Takes back a partner order whose purchase was confirmed (`confirmed → refunded`, with
    /// `returned_at` and `return_reason`; the order stays confirmed), in one transaction:
    /// its share of the points goes back to the buyer, a `refunded` payment row books its
    /// `payable` for the gateway, a `refund` settlement entry negates its `sale` entry (no
    /// sale entry is corruption: the transaction fails rather than refund a part the seller
    /// was never paid for), the points its purchase earned are taken back in proportion
    /// while the earn lot still has them, and `partner_order.returned` is written.
    ///
    /// No stock moves: the goods come back to the seller, who restocks them through the
    /// stock API if they are fit to sell again. From any other status nothing changes and
    /// the partner order comes back `Refused` as it is.
    async fn return_partner_order(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<FulfilmentOutcome>;
    /// A partner's partner orders with their items, newest first; only those in `status`
    /// when given.
    async fn partner_orders(
        &self,
        partner_id: i64,
        status: Option<PartnerOrderStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<PartnerOrderRecord>>;
    /// What `stampede verify` checks of fulfilment, from one snapshot.
    async fn fulfilment_audit(&self) -> StoreResult<FulfilmentAudit>;
}

#[derive(Debug, Clone)]
pub enum FulfilmentOutcome {
    Done(PartnerOrderRecord),
    NotFound,
    /// Not in the status the step starts from; nothing changed.
    Refused(PartnerOrderRecord),
}

#[derive(Debug, Clone)]
pub enum PartialCancelOutcome {
    /// The part as it now is, and its order after it (refunded when no part is left).
    Done {
        partner_order: PartnerOrderRecord,
        order: OrderRecord,
    },
    NotFound,
    /// Not `paid` nor `preparing`; nothing changed.
    Refused(PartnerOrderRecord),
}

/// How many partner orders are in `status` while their order is in `order_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerOrderStates {
    pub order_status: OrderStatus,
    pub status: PartnerOrderStatus,
    pub partner_orders: i64,
    /// The lowest id among them, to name one in a report.
    pub first_id: i64,
}

#[derive(Debug, Clone, Default)]
pub struct FulfilmentAudit {
    /// Every combination of order and partner order status that occurs.
    pub states: Vec<PartnerOrderStates>,
    /// Paid orders whose `delivered_at` disagrees with their parts: set while a part is
    /// still to deliver, or missing once all are delivered (or cancelled, one delivered).
    pub delivery_mismatches: Vec<i64>,
    /// Partner orders returned after confirmation without exactly one `refund` settlement
    /// entry mirroring their `sale` entry (`sql::RETURNS_WITHOUT_REFUND_ENTRY`).
    pub unbooked_returns: Vec<i64>,
    /// Partner orders with a `refund` entry that were never returned.
    pub stray_refund_entries: Vec<i64>,
}
