//! Seller settlement (issue 10): a business day's statements made in one transaction with
//! set-based SQL, their reads, and what `stampede verify` checks of them. Each backend
//! implements [`SettlementStore`] in its `settlement.rs`.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::events::{self, NewEvent, SettlementCreated};
use crate::domain::settlement::BusinessDate;
use crate::domain::Timestamp;
use async_trait::async_trait;

/// One business day as the store settles it: the date its statements carry and its bounds
/// in epoch milliseconds, `[from, to)`, computed by the caller in the settlement time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementDay {
    pub date: BusinessDate,
    pub from: Timestamp,
    pub to: Timestamp,
}

#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// Settles `day` in one transaction: one statement per partner with a partner order
    /// confirmed in `[from, to)` (`INSERT … SELECT … GROUP BY`, skipped by the unique key
    /// `(partner_id, business_date)` where it exists), the lines of the statements it
    /// made, a `settlement.created` event each, and the day marked settled. Returns the
    /// statements it made: none when the day was settled before.
    async fn settle_day(
        &self,
        day: &SettlementDay,
        now: Timestamp,
    ) -> StoreResult<Vec<SettlementRecord>>;
    /// The latest business day settled, where the daily job resumes.
    async fn last_settled_day(&self) -> StoreResult<Option<BusinessDate>>;
    /// When the first purchase still confirmed was confirmed: where the job starts on a
    /// store never settled.
    async fn first_confirmation(&self) -> StoreResult<Option<Timestamp>>;
    async fn settlement(&self, id: i64) -> StoreResult<Option<SettlementRecord>>;
    /// A partner's statements, latest business day first.
    async fn settlements(
        &self,
        partner_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementRecord>>;
    /// A statement's lines by partner order id.
    async fn settlement_lines(
        &self,
        settlement_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementLineRecord>>;
    /// Every line of a statement by partner order id (one partner's day: its CSV).
    async fn all_settlement_lines(
        &self,
        settlement_id: i64,
    ) -> StoreResult<Vec<SettlementLineRecord>>;
    /// What `stampede verify` checks of settlement, from one snapshot.
    async fn settlement_audit(&self) -> StoreResult<SettlementAudit>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    pub id: i64,
    pub partner_id: i64,
    pub business_date: BusinessDate,
    pub gross: i64,
    pub commission: i64,
    pub net: i64,
    pub line_count: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLineRecord {
    pub partner_order_id: i64,
    pub order_id: i64,
    pub subtotal: i64,
    pub commission_rate_bps: i64,
    pub commission: i64,
    pub net: i64,
    pub confirmed_at: Timestamp,
}

/// A statement whose totals differ from the sums of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementMismatch {
    pub settlement_id: i64,
    /// `(gross, commission, net, line_count)` as the statement says.
    pub stated: (i64, i64, i64, i64),
    /// The same summed from its lines.
    pub summed: (i64, i64, i64, i64),
}

#[derive(Debug, Clone, Default)]
pub struct SettlementAudit {
    pub mismatches: Vec<StatementMismatch>,
    /// Partner orders on more than one sale line (the unique key forbids it; verify
    /// proves it from the rows).
    pub settled_twice: Vec<i64>,
}

/// One `settlement.created` per statement made, for the transaction that made them.
pub(crate) fn created_events(created: &[SettlementRecord]) -> Vec<NewEvent> {
    created
        .iter()
        .map(|s| {
            events::settlement_created(&SettlementCreated {
                settlement_id: s.id,
                partner_id: s.partner_id,
                business_date: s.business_date.to_string(),
                gross: s.gross,
                commission: s.commission,
                net: s.net,
                line_count: s.line_count,
            })
        })
        .collect()
}
