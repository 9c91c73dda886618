//! Seller settlement (issue 10, seed 003): each business day, one statement per partner of
//! the entries its books gained that day — purchases confirmed, confirmed parts returned —
//! with its commission; made by the daily job
//! (`jobs::settlement`) or `stampede settle`, read by the partner's sellers and admins.
//! The store makes a day's statements in one transaction and its unique keys make a second
//! run change nothing; here are the calendar (which day is due, its bounds) and who may
//! read what.

use super::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::settlement::{BusinessDate, SettlementCalendar, CATCH_UP_MAX_DAYS};
use crate::domain::{Actor, Role, Timestamp};
use crate::events::EventSync;
use crate::store::{
    Page, PageRequest, SettlementDay, SettlementLineRecord, SettlementRecord, Store,
};
use std::sync::Arc;

pub struct Settlement {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub events: EventSync,
    /// `settlement_timezone` and `settlement_at`.
    pub calendar: SettlementCalendar,
}

/// What one settled day made.
#[derive(Debug, Clone)]
pub struct SettledDay {
    pub date: BusinessDate,
    /// The statements this run made: none when the day was settled before.
    pub statements: Vec<SettlementRecord>,
}

/// A statement with one page of its lines.
#[derive(Debug, Clone)]
pub struct Statement {
    pub settlement: SettlementRecord,
    pub lines: Page<SettlementLineRecord>,
}

impl Settlement {
    /// Settles one business day that has ended; a day still running is refused, since a
    /// purchase confirmed later that day could never be added to its statement.
    pub async fn settle_day(&self, date: BusinessDate) -> AppResult<SettledDay> {
        let now = self.clock.now();
        if !self.calendar.has_ended(date, now)? {
            return Err(AppError::BusinessDayNotOver(format!(
                "business day {date} has not ended yet in the settlement time zone"
            )));
        }
        let (from, to) = self.calendar.bounds(date)?;
        let day = SettlementDay { date, from, to };
        let statements = self.store.settle_day(&day, now).await?;
        if !statements.is_empty() {
            self.events.wake();
        }
        Ok(SettledDay { date, statements })
    }

    /// The business day before today's, in the settlement time zone: what `stampede
    /// settle` settles by default.
    pub fn yesterday(&self) -> AppResult<BusinessDate> {
        Ok(self.calendar.date_of(self.clock.now())?.previous())
    }

    /// Every day due at `now` and not settled yet, oldest first, at most
    /// [`CATCH_UP_MAX_DAYS`]: from the day after the last one settled, or on a store never
    /// settled from the day of the first entry in the books, to yesterday once today's
    /// `settlement_at` has passed (the day before until then).
    pub async fn settle_due(&self, now: Timestamp) -> AppResult<Vec<SettledDay>> {
        let latest = self.calendar.latest_due(now)?;
        let first = match self.store.last_settled_day().await? {
            Some(last) => last.next(),
            None => match self.store.first_entry().await? {
                Some(at) => self.calendar.date_of(at)?,
                None => return Ok(Vec::new()),
            },
        };
        let mut settled = Vec::new();
        let mut date = first;
        while date <= latest && settled.len() < CATCH_UP_MAX_DAYS {
            settled.push(self.settle_day(date).await?);
            date = date.next();
        }
        Ok(settled)
    }

    /// A partner's statements, latest day first: its sellers and admins.
    pub async fn partner_settlements(
        &self,
        actor: &Actor,
        partner_id: i64,
        page: PageRequest,
    ) -> AppResult<Page<SettlementRecord>> {
        require(actor, &[Role::Seller, Role::Admin])?;
        if !actor.may_manage_partner(partner_id) {
            return Err(AppError::Forbidden);
        }
        // A seller's own partner exists; an admin may name any id.
        if actor.is_admin() && self.store.partner(partner_id).await?.is_none() {
            return Err(AppError::not_found("partner"));
        }
        Ok(self.store.settlements(partner_id, page).await?)
    }

    /// One statement with a page of its lines.
    pub async fn statement(
        &self,
        actor: &Actor,
        id: i64,
        page: PageRequest,
    ) -> AppResult<Statement> {
        let settlement = self.readable(actor, id).await?;
        let lines = self.store.settlement_lines(id, page).await?;
        Ok(Statement { settlement, lines })
    }

    /// One statement with all its lines (one partner's day), for its CSV.
    pub async fn statement_lines(
        &self,
        actor: &Actor,
        id: i64,
    ) -> AppResult<(SettlementRecord, Vec<SettlementLineRecord>)> {
        let settlement = self.readable(actor, id).await?;
        let lines = self.store.all_settlement_lines(id).await?;
        Ok((settlement, lines))
    }

    /// A statement the caller may read: 403 for buyers, 404 when it does not exist or is
    /// another partner's (ids leak nothing).
    async fn readable(&self, actor: &Actor, id: i64) -> AppResult<SettlementRecord> {
        require(actor, &[Role::Seller, Role::Admin])?;
        self.store
            .settlement(id)
            .await?
            .filter(|s| actor.may_manage_partner(s.partner_id))
            .ok_or_else(|| AppError::not_found("settlement"))
    }
}
