//! Seller settlement (issue 10): the sellers' books are an append-only ledger,
//! `settlement_entries` — a sale entry written by each purchase's confirmation, a refund
//! entry by each return — and a business day's statements are one `INSERT … SELECT … GROUP
//! BY` over the entries recorded that day, one row per partner; a statement's lines are
//! its partner's entries over its period, read back, never copied. Here: the statements'
//! making and reads, and what `stampede verify` checks of them. Each backend implements
//! [`SettlementStore`] in its `settlement.rs`.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::events::{self, NewEvent, SettlementCreated};
use crate::domain::settlement::{BusinessDate, LineKind};
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
    /// Settles `day` in one transaction: one statement per partner with entries recorded
    /// in `[from, to)` (`INSERT … SELECT … GROUP BY`, skipped by the unique key
    /// `(partner_id, business_date)` where it exists), a `settlement.created` event each,
    /// and the day marked settled with its bounds. Entries still being written into the day
    /// are waited for, and none can be added to it while it settles (PostgreSQL: a share
    /// lock on the ledger; SQLite: its one writer). Returns the statements it made: none
    /// when the day was settled before.
    async fn settle_day(
        &self,
        day: &SettlementDay,
        now: Timestamp,
    ) -> StoreResult<Vec<SettlementRecord>>;
    /// The latest business day settled, where the daily job resumes.
    async fn last_settled_day(&self) -> StoreResult<Option<BusinessDate>>;
    /// When the first entry was recorded: where the job starts on a store never settled.
    async fn first_entry(&self) -> StoreResult<Option<Timestamp>>;
    async fn settlement(&self, id: i64) -> StoreResult<Option<SettlementRecord>>;
    /// A partner's statements, latest business day first.
    async fn settlements(
        &self,
        partner_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementRecord>>;
    /// A statement's lines, in the order they were recorded.
    async fn settlement_lines(
        &self,
        settlement_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementLineRecord>>;
    /// Every line of a statement in the order they were recorded (one partner's day: its
    /// CSV).
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

/// One entry of the sellers' books, as a line of the statement that covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLineRecord {
    pub kind: LineKind,
    pub partner_order_id: i64,
    pub order_id: i64,
    pub subtotal: i64,
    pub commission_rate_bps: i64,
    pub commission: i64,
    pub net: i64,
    /// When the purchase was confirmed.
    pub confirmed_at: Timestamp,
    /// When the entry was written: the confirmation for a sale, the return for a refund.
    pub recorded_at: Timestamp,
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
    /// Partner orders whose sale is on more than one statement or in the books twice (the
    /// keys forbid both; verify proves it from the rows).
    pub settled_twice: Vec<i64>,
    /// Entries in a settled day of a partner without a statement that day: written after
    /// the day was settled, so never paid out.
    pub unsettled_entries: Vec<i64>,
    /// Partner orders whose sale entry is missing or disagrees with them, or entries of
    /// purchases never confirmed.
    pub sale_entry_mismatches: Vec<i64>,
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
