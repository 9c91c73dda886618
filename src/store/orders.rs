//! Orders: placement batches and the order lifecycle ([`OrderStore`]), with the rows they
//! read and write. Each backend places orders in its `place.rs` and moves them through
//! their lifecycle in its `orders.rs`.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::allocation::{OrderRequest, Rejection};
use crate::domain::events::PartnerOrderChanged;
use crate::domain::fulfilment::PartnerOrderStatus;
use crate::domain::order::CancelReason;
use crate::domain::shares::Share;
use crate::domain::{OrderStatus, Timestamp};
use async_trait::async_trait;

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Places a batch in ONE transaction: locks the products' stock rows in ascending id
    /// order, allocates with [`crate::domain::allocation::allocate`], writes accepted orders,
    /// their partner orders, items, hold movements and events, and returns one outcome per
    /// request, in order. A request rejected by allocation never fails the batch.
    async fn place_batch(
        &self,
        batch: &[OrderRequest],
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<BatchResult>;
    async fn order(&self, id: i64) -> StoreResult<Option<OrderRecord>>;
    /// The order placed by `user_id` with `idempotency_key`, if any (index of the key).
    async fn order_of_attempt(
        &self,
        user_id: i64,
        idempotency_key: &str,
    ) -> StoreResult<Option<i64>>;
    /// The buyer and key of the newest orders placed since `since`, at most `limit`: what a
    /// starting node's gate remembers as attempts already placed.
    async fn recent_attempts(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>>;
    /// Newest first; all orders when `user_id` is `None`.
    async fn list_orders(
        &self,
        user_id: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<OrderRecord>>;
    /// Records a payment attempt that did not go through (declined, amount mismatch, voided).
    async fn record_payment(&self, payment: &PaymentAttempt, now: Timestamp) -> StoreResult<()>;
    /// `pending_payment → paid` if still pending and `now < pay_by`: commits the holds
    /// (commit movements), records the approved payment, writes `order.paid`.
    async fn mark_paid(
        &self,
        order_id: i64,
        payment: &PaymentAttempt,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome>;
    /// `pending_payment → cancelled` (release movements, `order.cancelled`/`order.expired`)
    /// or, for `reason == Requested`, `paid → refunded` (return movements, `order.refunded`).
    async fn cancel_order(
        &self,
        order_id: i64,
        reason: CancelReason,
        now: Timestamp,
    ) -> StoreResult<TransitionOutcome>;
    /// Ids of up to `limit` pending orders whose `pay_by <= now`, oldest deadline first.
    async fn due_orders(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
    /// `paid → confirmed` (purchase confirmed, by the buyer or automatically) once every
    /// partner order is delivered or cancelled: the order, its delivered partner orders
    /// (`confirmed_at`), and an `order.confirmed` event. No stock moves: the holds were
    /// committed at payment. Re-checks the state in its transaction, so two nodes confirming
    /// the same order confirm it once; a paid order with a part still to deliver is
    /// `Refused` as it is.
    async fn confirm_order(&self, order_id: i64, now: Timestamp) -> StoreResult<TransitionOutcome>;
    /// Ids of up to `limit` paid orders whose last delivery (`delivered_at`) was at or
    /// before `cutoff`, oldest delivery first.
    async fn due_confirmations(&self, cutoff: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
}

#[derive(Debug, Clone)]
pub struct OrderItemRecord {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// One partner's part of an order, and how far its seller has fulfilled it.
#[derive(Debug, Clone)]
pub struct PartnerOrderRecord {
    pub id: i64,
    /// The buyer's order it is part of.
    pub order_id: i64,
    pub partner_id: i64,
    pub status: PartnerOrderStatus,
    pub subtotal: i64,
    /// Its share of the order's discount and points (`domain::shares`), and
    /// `subtotal - discount - points_used`: what cancelling it gives back.
    pub discount: i64,
    pub points_used: i64,
    pub payable: i64,
    /// Why and when it was cancelled on its own (`POST /partner-orders/{id}/cancel`).
    pub cancel_reason: Option<String>,
    pub cancelled_at: Option<Timestamp>,
    /// Set together when the partner order ships.
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub prepared_at: Option<Timestamp>,
    pub shipped_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    /// When the buyer's purchase confirmation (or the sweeper's) covered it.
    pub confirmed_at: Option<Timestamp>,
    /// When and why its seller took it back after the purchase was confirmed
    /// (`POST /partner-orders/{id}/return`); it is `refunded` and keeps `confirmed_at`.
    pub returned_at: Option<Timestamp>,
    pub return_reason: Option<String>,
    /// Ascending by product id.
    pub items: Vec<OrderItemRecord>,
}

impl PartnerOrderRecord {
    /// A partner order as placement writes it: awaiting payment, nothing fulfilled yet.
    pub fn placed(
        id: i64,
        order_id: i64,
        partner_id: i64,
        (subtotal, share): (i64, Share),
        items: Vec<OrderItemRecord>,
    ) -> PartnerOrderRecord {
        PartnerOrderRecord {
            id,
            order_id,
            partner_id,
            status: PartnerOrderStatus::PendingPayment,
            subtotal,
            discount: share.discount.get(),
            points_used: share.points.get(),
            payable: share.payable.get(),
            cancel_reason: None,
            cancelled_at: None,
            carrier: None,
            tracking_number: None,
            prepared_at: None,
            shipped_at: None,
            delivered_at: None,
            confirmed_at: None,
            returned_at: None,
            return_reason: None,
            items,
        }
    }

    /// The payload of the `partner_order.*` event of a step it has just taken.
    pub fn changed(&self, user_id: i64, at: Timestamp) -> PartnerOrderChanged {
        PartnerOrderChanged {
            partner_order_id: self.id,
            order_id: self.order_id,
            user_id,
            partner_id: self.partner_id,
            status: self.status,
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
            at,
        }
    }
}

impl OrderRecord {
    /// What the buyer is still owed back if the rest of the order is refunded: the
    /// payable of the parts not cancelled on their own (those were refunded already).
    pub fn unrefunded(&self) -> i64 {
        let cancelled: i64 = self
            .partner_orders
            .iter()
            .filter(|p| p.status == PartnerOrderStatus::Cancelled && p.cancelled_at.is_some())
            .map(|p| p.payable)
            .sum();
        self.payable - cancelled
    }
}

#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub total: i64,
    /// The user coupon the order holds or used.
    pub coupon_id: Option<i64>,
    pub discount: i64,
    pub points_used: i64,
    pub payable: i64,
    pub pay_by: Timestamp,
    /// When the payment was accepted; `None` until the order is paid.
    pub paid_at: Option<Timestamp>,
    /// When the last of its partner orders was delivered (none left to deliver); the
    /// automatic purchase confirmation counts from here.
    pub delivered_at: Option<Timestamp>,
    pub cancel_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Ascending by partner id; items ascending by product id.
    pub partner_orders: Vec<PartnerOrderRecord>,
}

#[derive(Debug, Clone)]
pub enum PlaceOutcome {
    Placed(OrderRecord),
    /// The idempotency key was seen before with the same body.
    Replayed(OrderRecord),
    Rejected(Rejection),
}

#[derive(Debug, Clone)]
pub struct BatchResult {
    /// One per request, in request order.
    pub outcomes: Vec<PlaceOutcome>,
    /// Availability after the batch for every product it touched.
    pub available_after: Vec<(i64, i64)>,
    /// The id of the last event the batch wrote, if it wrote any: once the node has
    /// dispatched up to it, every read shows the batch.
    pub last_event_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Approved,
    Declined,
    AmountMismatch,
    Refunded,
    /// Captured by the gateway but the order could no longer be paid, so it was voided.
    Voided,
}

impl PaymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentOutcome::Approved => "approved",
            PaymentOutcome::Declined => "declined",
            PaymentOutcome::AmountMismatch => "amount_mismatch",
            PaymentOutcome::Refunded => "refunded",
            PaymentOutcome::Voided => "voided",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PaymentAttempt {
    pub order_id: i64,
    pub payment_key: String,
    pub amount: i64,
    pub outcome: PaymentOutcome,
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub enum TransitionOutcome {
    Done(OrderRecord),
    NotFound,
    /// The order is not in a state that allows the transition (or its deadline passed);
    /// nothing changed.
    Refused(OrderRecord),
}
