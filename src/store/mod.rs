//! Storage behind traits, one module per backend (STYLE §2). Domain and HTTP code only
//! ever see `Arc<dyn Store>`, opened by [`open::connect`] from the URL scheme.
//!
//! - One file per area holds its trait and the rows it reads and writes: [`accounts`],
//!   [`catalog`], [`checkouts`], [`orders`], [`fulfilment`], [`outbox`], [`audit`], [`waitlist`],
//!   [`coupons`], [`points`], [`settlement`], [`leases`], [`relay`], [`dead_letters`]; [`page`] and
//!   [`error`] (with the one classification of driver errors) are what every area shares.
//! - `sqlite/` and `postgres/` implement every trait with the same file names in both, each
//!   owning its `migrations/` and the SQL of its dialect (row locks, array or JSON list
//!   parameters, batch inserts). Stock is held, committed and released in `*/stock.rs`;
//!   orders are placed in `*/place.rs`.
//! - What the two backends share is written once: `sql.rs`, the statements both dialects
//!   run verbatim, and `rows.rs`, the mapping from rows to records.
//! - [`open`] is the one file that names both backends, so nothing here imports them.
//!
//! Every name callers use is re-exported here, explicitly, so `crate::store::OrderRecord`
//! works wherever the type is defined.

pub mod accounts;
pub mod audit;
pub mod bench;
pub(crate) mod benefits_audit;
pub mod catalog;
pub mod checkouts;
#[cfg(test)]
mod conventions;
pub mod coupons;
pub mod dead_letters;
pub mod error;
pub mod fulfilment;
pub mod leases;
pub mod open;
pub mod operations;
pub mod orders;
pub mod outbox;
pub mod page;
pub mod points;
pub mod postgres;
pub mod relay;
pub(crate) mod rows;
pub mod settlement;
pub(crate) mod sql;
pub mod sqlite;
pub mod waiting_room;
pub mod waitlist;

pub use accounts::{AuthStore, NewUser, RotateOutcome, UserRecord};
pub use audit::{
    Audit, AuditStore, BenefitsAudit, LimitBreach, OrderAudit, OrderBenefitsAudit,
    OrderCouponAudit, StockAudit, StrayCoupon,
};
pub use bench::SettlementBench;
pub use catalog::{
    AdjustOutcome, CatalogStore, MovementRecord, NewProduct, PartnerRecord, ProductPatch,
    ProductRecord, StockLevels,
};
pub use checkouts::{CheckoutRecord, CheckoutStatus, CheckoutStore};
pub use coupons::{
    coupon_terms, CampaignRecord, CouponAudit, CouponStore, IssueOutcome, NewCampaign,
    NewUserCoupon, UserCouponRecord,
};
pub use dead_letters::{DeadLetterRecord, DeadLetterStore, NewDeadLetter};
pub use error::{StoreError, StoreResult};
pub use fulfilment::{
    FulfilmentAudit, FulfilmentOutcome, FulfilmentStore, PartialCancelOutcome, PartnerOrderStates,
};
pub use leases::{JobRunRecord, LeaseStore};
pub use operations::{CampaignProgress, NodeBeat, OperationsStore, ProductInPlay};
pub use orders::{
    BatchResult, OrderItemRecord, OrderRecord, OrderStore, PartnerOrderRecord, PaymentAttempt,
    PaymentOutcome, PlaceOutcome, TransitionOutcome,
};
pub use outbox::{Backlog, OutboxStore};
pub use page::{Page, PageRequest, MAX_PAGE_SIZE};
pub use points::{
    EarnOutcome, Earning, ExpiredPoints, NewPointsOperation, PointsAccount, PointsAccountAudit,
    PointsAudit, PointsAuditRows, PointsExpiring, PointsHold, PointsHoldAudit, PointsLedgerRecord,
    PointsLotAudit, PointsOperationKind, PointsOperationOutcome, PointsOperationRecord,
    PointsStore, PointsSummary,
};
pub use relay::RelayStore;
pub use settlement::{
    SettlementAudit, SettlementDay, SettlementLineRecord, SettlementRecord, SettlementStore,
    StatementMismatch,
};
pub use waiting_room::{TicketOutcome, TicketRecord, TicketState, WaitingLine, WaitingRoomStore};
pub use waitlist::{JoinOutcome, WaitlistBreach, WaitlistEntryRecord, WaitlistStore};

use crate::domain::Timestamp;
use async_trait::async_trait;
use std::time::Duration;

/// The whole store. One implementation per backend.
#[async_trait]
pub trait Store:
    accounts::AuthStore
    + catalog::CatalogStore
    + checkouts::CheckoutStore
    + orders::OrderStore
    + fulfilment::FulfilmentStore
    + outbox::OutboxStore
    + audit::AuditStore
    + waitlist::WaitlistStore
    + waiting_room::WaitingRoomStore
    + coupons::CouponStore
    + points::PointsStore
    + settlement::SettlementStore
    + bench::SettlementBench
    + leases::LeaseStore
    + relay::RelayStore
    + dead_letters::DeadLetterStore
    + operations::OperationsStore
{
    fn backend(&self) -> &'static str;
    /// Brings the schema up to date; `now` is recorded as each migration's `applied_at`.
    async fn migrate(&self, now: Timestamp) -> StoreResult<()> {
        self.migrate_to(now, i64::MAX).await
    }
    /// Applies the pending migrations up to version `last` only, leaving the later ones
    /// pending: tests of a migration write rows under the schema before it, then `migrate`.
    /// A node serves only a schema that `migrate` brought up to date.
    #[doc(hidden)]
    async fn migrate_to(&self, now: Timestamp, last: i64) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
}

/// Connection limits, each named with its unit (STYLE §7). Here rather than in [`open`]
/// because both backends' `connect` take it, and [`open`] imports the backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}
