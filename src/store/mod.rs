//! Storage behind traits, one module per backend (STYLE §2). `sqlite/` and `postgres/` each
//! own their migrations and SQL; [`connect`] picks one from the URL scheme. Domain and HTTP
//! code only ever see `Arc<dyn Store>`.

pub mod postgres;
pub mod records;
pub mod sqlite;

use crate::domain::allocation::OrderRequest;
use crate::domain::events::Event;
use crate::domain::order::CancelReason;
use crate::domain::{Role, Timestamp};
use async_trait::async_trait;
pub use records::*;

pub(crate) mod benefits_audit;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database is unreachable or timed out; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Connection limits, each named with its unit (STYLE §7).
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// `Conflict("email_taken")` when the email exists.
    async fn insert_user(&self, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord>;
    /// Bulk insert for load-test provisioning; returns ids in input order.
    async fn insert_users_bulk(&self, users: &[NewUser], now: Timestamp) -> StoreResult<Vec<i64>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// Starts a session holding the hash of its first refresh token; returns its id.
    async fn create_session(
        &self,
        user_id: i64,
        refresh_hash: &str,
        refresh_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<i64>;
    /// Swaps the session's refresh hash `old → new` if `old` is current and unexpired.
    /// Presenting a hash that was already rotated away revokes the session (token reuse).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome>;
    /// Revokes the session and deny-lists the access token `jti` until it expires, writing
    /// a `session.revoked` event, in one transaction.
    async fn revoke_session(
        &self,
        user_id: i64,
        session_id: i64,
        jti: &str,
        access_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn revoked_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>>;
    /// Reads a setting, or stores `value` if it is absent; returns whichever is stored.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;
}

#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn insert_partner(
        &self,
        name: &str,
        commission_rate_bps: i64,
        now: Timestamp,
    ) -> StoreResult<PartnerRecord>;
    async fn partner(&self, id: i64) -> StoreResult<Option<PartnerRecord>>;
    /// Creates the product, its stock account and (if `stock > 0`) an inbound movement,
    /// with `product.created` and `stock.changed` events, in one transaction.
    async fn insert_product(
        &self,
        product: &NewProduct,
        now: Timestamp,
    ) -> StoreResult<ProductRecord>;
    async fn product(&self, id: i64) -> StoreResult<Option<ProductRecord>>;
    /// Ordered by `release_at` then id, ascending.
    async fn list_products(&self, page: PageRequest) -> StoreResult<Page<ProductRecord>>;
    async fn update_product(
        &self,
        id: i64,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> StoreResult<Option<ProductRecord>>;
    /// Adds units to `on_hand` with an inbound movement and a `stock.changed` event.
    async fn inbound(
        &self,
        product_id: i64,
        quantity: i64,
        memo: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<StockLevels>>;
    /// Corrects `on_hand` by a signed `delta` with an `adjust` movement (quantity = delta)
    /// and a `stock.changed` event, in one transaction. A guarded conditional write: refused
    /// with [`AdjustOutcome::BelowHeld`], changing nothing, when `on_hand + delta < held`.
    async fn adjust(
        &self,
        product_id: i64,
        delta: i64,
        memo: &str,
        now: Timestamp,
    ) -> StoreResult<AdjustOutcome>;
    /// Newest first.
    async fn movements(
        &self,
        product_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<MovementRecord>>;
}

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
    /// `paid → confirmed` (purchase confirmed, by the buyer or automatically): the order and
    /// its partner orders, and an `order.confirmed` event. No stock moves: the holds were
    /// committed at payment. Re-checks the state in its transaction, so two nodes confirming
    /// the same order confirm it once.
    async fn confirm_order(&self, order_id: i64, now: Timestamp) -> StoreResult<TransitionOutcome>;
    /// Ids of up to `limit` paid orders whose `paid_at <= cutoff`, oldest payment first.
    async fn due_confirmations(&self, cutoff: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn last_event_id(&self) -> StoreResult<i64>;
    /// Events with `id > after`, ascending, at most `limit`.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Everything `stampede verify` compares, recomputed from the rows (see [`Audit`]).
    async fn audit(&self) -> StoreResult<Audit>;
    /// Orders that use a coupon or points beside their coupon and points hold, and held or
    /// used coupons no order names, from one snapshot.
    async fn benefits_audit(&self) -> StoreResult<BenefitsAudit>;
}

/// The waitlists of sold-out products (`crate::waitlist`). Every status change is a
/// conditional write on the entry's current status, with its `waitlist.*` event in the
/// same transaction, so two nodes racing on one entry change it once.
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
    /// Up to `limit` products, ascending, released by `now`, that have waiting entries and
    /// available stock.
    async fn products_to_offer(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
    /// `waiting → status` (normally `offered`) linked to the offer's `order_id`, with its
    /// event (`pay_by` goes into it); `None`, changing nothing, if the entry is not waiting.
    async fn link_offer(
        &self,
        entry_id: i64,
        order_id: i64,
        status: crate::domain::waitlist::WaitlistStatus,
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

/// First-come coupon campaigns (`crate::coupons`). The database decides every claim: one
/// transaction makes the conditional count (`issued < total_quantity`, inside the issue
/// window), inserts the user coupon under `UNIQUE (campaign_id, user_id)` and appends
/// `coupon.issued`; a refused claim writes nothing.
#[async_trait]
pub trait CouponStore: Send + Sync {
    /// Creates the campaign with a `coupon.campaign_created` event.
    async fn insert_campaign(
        &self,
        campaign: &NewCampaign,
        now: Timestamp,
    ) -> StoreResult<CampaignRecord>;
    async fn campaign(&self, id: i64) -> StoreResult<Option<CampaignRecord>>;
    /// Issues one coupon of `coupon.campaign_id` to `coupon.user_id` at `now`, or says why
    /// not, changing nothing.
    async fn issue_coupon(
        &self,
        coupon: &NewUserCoupon,
        now: Timestamp,
    ) -> StoreResult<IssueOutcome>;
    /// The buyer's coupons, newest first.
    async fn user_coupons(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<UserCouponRecord>>;
    /// Ids of the buyers holding a coupon of the campaign (to reset the Redis gate).
    async fn coupon_holders(&self, campaign_id: i64) -> StoreResult<Vec<i64>>;
    /// Every campaign's `issued` beside its rows, ascending by id.
    async fn coupon_audit(&self) -> StoreResult<Vec<CouponAudit>>;
}

/// Loyalty points (`crate::points`, rules in `crate::domain::points`). Every change is a
/// conditional write on the account (`balance - held >= amount`), the lots and, for an
/// order's hold, the hold's status, with its ledger rows and `points.*` event in the same
/// transaction; the CHECKs (`0 <= held <= balance`, `0 <= held <= remaining <= amount`)
/// are the last line of defence. Writers lock the account before its lots.
#[async_trait]
pub trait PointsStore: Send + Sync {
    /// The account and what of it expires by `horizon` (unheld remainders, soonest first).
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary>;
    /// The buyer's ledger, newest first.
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>>;
    /// An admin's grant or adjustment, once per `(admin_id, idempotency_key)`.
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome>;
    /// Records `(consumer, event_id)` as processed and, the first time only, gives the
    /// buyer of the confirmed order their points as a lot, in one transaction.
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome>;
    /// Up to `limit` buyers, ascending, with unheld points in lots whose `expires_at <= now`.
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
    /// Expires the unheld part of the buyer's lots due by `now` (`points.expired`); `None`
    /// when nothing was due.
    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>>;
    /// Takes or renews the lease `name` for `holder` until `until`: one conditional upsert
    /// that succeeds when the lease is free, expired, or already `holder`'s.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Up to `limit` `order.confirmed` events, oldest first, that `consumer` has not
    /// processed (the earning consumer's safety net for events no running node saw).
    async fn unprocessed_confirmations(
        &self,
        consumer: &str,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::events::Event>>;
    /// Accounts, lots and holds beside their ledger rows, from one snapshot.
    async fn points_audit(&self) -> StoreResult<PointsAudit>;
}

/// The whole store. One implementation per backend.
#[async_trait]
pub trait Store:
    AuthStore
    + CatalogStore
    + OrderStore
    + OutboxStore
    + AuditStore
    + WaitlistStore
    + CouponStore
    + PointsStore
{
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`). Does not migrate.
pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::connect(url, options).await?))
    } else {
        Err(StoreError::Unavailable(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

pub(crate) fn role_of(raw: &str) -> StoreResult<Role> {
    Role::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown role {raw:?}")))
}
