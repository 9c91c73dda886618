//! Fulfilment: sellers moving their partner orders `paid → preparing → shipped →
//! delivered` ([`FulfilmentStore`]), the partner's listing, and what `stampede verify`
//! reads of it. Each backend implements it in its `fulfilment.rs`.

use super::error::StoreResult;
use super::orders::PartnerOrderRecord;
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
}
