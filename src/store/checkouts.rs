//! Checkouts: the attempt to pay an order, recorded before the gateway is asked (issue 11).
//! A checkout binds a payment id to one order for good (`UNIQUE (payment_id)`); an order
//! has at most one `open` checkout. Paying the order resolves its checkout in the same
//! transaction (`OrderStore::mark_paid`); the reconciler resolves the ones left open.

use super::error::StoreResult;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait CheckoutStore: Send + Sync {
    /// The order's open checkout, or a new one under `payment_id` for `amount` if it has
    /// none. Two concurrent calls for one order return the same checkout.
    async fn open_checkout(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<CheckoutRecord>;
    /// The checkout of `payment_id`, whatever its status.
    async fn checkout(&self, payment_id: &str) -> StoreResult<Option<CheckoutRecord>>;
    /// The checkout of `payment_id` if it exists (possibly another order's); otherwise
    /// `payment_id` becomes the order's open checkout, any other open one of the order
    /// being abandoned. Only for the simulator, whose clients pay under keys of their own
    /// without asking for a checkout first.
    async fn adopt_checkout(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<CheckoutRecord>;
    /// Moves the checkout of `payment_id` to `status` (`voided` or `abandoned`) from `open`,
    /// or to `voided` from `abandoned` (money that arrived after all and went back). `false`
    /// when it was not in such a status.
    async fn resolve_checkout(
        &self,
        payment_id: &str,
        status: CheckoutStatus,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Up to `limit` open checkouts created at or before `cutoff`, oldest first: the
    /// reconciler's work.
    async fn stale_checkouts(
        &self,
        cutoff: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<CheckoutRecord>>;
    /// The payment id the order was paid with (its approved payment's key), if it was.
    async fn approved_payment_id(&self, order_id: i64) -> StoreResult<Option<String>>;
    /// Whether the gateway's webhook `webhook_id` was processed before.
    async fn webhook_seen(&self, webhook_id: &str) -> StoreResult<bool>;
    /// Records the webhook `webhook_id` as processed; `false` when it already was.
    async fn record_webhook(
        &self,
        webhook_id: &str,
        event_type: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutStatus {
    Open,
    Paid,
    Voided,
    Abandoned,
}

impl CheckoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Open => "open",
            CheckoutStatus::Paid => "paid",
            CheckoutStatus::Voided => "voided",
            CheckoutStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(text: &str) -> Option<CheckoutStatus> {
        [
            CheckoutStatus::Open,
            CheckoutStatus::Paid,
            CheckoutStatus::Voided,
            CheckoutStatus::Abandoned,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRecord {
    pub order_id: i64,
    pub payment_id: String,
    /// The order's payable amount when the checkout was opened.
    pub amount: i64,
    pub status: CheckoutStatus,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}
