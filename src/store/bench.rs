//! What `stampede loadgen settlement` needs of the store and no one else does: filling it
//! with a day of confirmed purchases in a few set-based statements, and the bare aggregate
//! settlement is built on, timed beside it. Each backend implements [`SettlementBench`] in
//! its `bench.rs`.

use super::error::StoreResult;
use super::settlement::SettlementDay;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait SettlementBench: Send + Sync {
    /// Adds `partners` partners (rates from 5% to 25%), one buyer, and `lines` confirmed
    /// orders of one partner order each, round-robin over the partners, confirmed evenly
    /// over `day`, with the sale entries their confirmations would have written; then
    /// refreshes the planner's statistics. `tag` keeps names unique. The
    /// orders have no items, stock or payment behind them: a store filled so is a scratch
    /// store for the benchmark (`stampede verify` reports their missing items).
    async fn fill_confirmed_lines(
        &self,
        tag: &str,
        partners: i64,
        lines: i64,
        day: &SettlementDay,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The aggregate alone, `INSERT … SELECT … GROUP BY` into a scratch table that is
    /// dropped after; returns the rows it made (one per partner).
    async fn bare_settlement_aggregate(&self, day: &SettlementDay) -> StoreResult<i64>;
}
