//! Settlement on PostgreSQL. A day's statements are one `INSERT … SELECT … GROUP BY` over
//! the entries recorded that day (an index-only range scan of `settlement_entries_day`),
//! after a share lock on the ledger: it waits for confirmations and returns still writing
//! entries to commit, and keeps new ones out until the statements are made, so none lands
//! in the day after its statements read it. Two nodes at once both take the share lock and
//! meet on the statements' unique key: the second waits for the first to commit, then
//! skips every partner it made.

use super::conn::{snapshot, PgStore};
use super::outbox;
use crate::domain::settlement::BusinessDate;
use crate::domain::Timestamp;
use crate::store::rows::{
    business_date, settlement_from_row, settlement_line_from_row, statement_mismatch_from_row,
};
use crate::store::settlement::created_events;
use crate::store::{
    sql, Page, PageRequest, SettlementAudit, SettlementDay, SettlementLineRecord, SettlementRecord,
    SettlementStore, StoreResult,
};
use async_trait::async_trait;

#[async_trait]
impl SettlementStore for PgStore {
    #[tracing::instrument(skip_all, fields(business_date = %day.date))]
    async fn settle_day(
        &self,
        day: &SettlementDay,
        now: Timestamp,
    ) -> StoreResult<Vec<SettlementRecord>> {
        let date = day.date.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE settlement_entries IN SHARE MODE")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::INSERT_DAY_STATEMENTS)
            .bind(&date)
            .bind(day.from.millis())
            .bind(day.to.millis())
            .bind(now.millis())
            .fetch_all(&mut *tx)
            .await?;
        let created = rows
            .iter()
            .map(settlement_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        sqlx::query(sql::MARK_DAY_SETTLED)
            .bind(&date)
            .bind(i64::try_from(created.len()).unwrap_or(i64::MAX))
            .bind(now.millis())
            .bind(day.from.millis())
            .bind(day.to.millis())
            .execute(&mut *tx)
            .await?;
        outbox::append(&mut tx, &created_events(&created), now).await?;
        tx.commit().await?;
        Ok(created)
    }

    #[tracing::instrument(skip_all)]
    async fn last_settled_day(&self) -> StoreResult<Option<BusinessDate>> {
        let last: Option<String> = sqlx::query_scalar(sql::LAST_SETTLED_DAY)
            .fetch_one(&self.pool)
            .await?;
        last.map(|raw| business_date(&raw)).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn first_entry(&self) -> StoreResult<Option<Timestamp>> {
        let first: Option<i64> = sqlx::query_scalar(sql::FIRST_ENTRY)
            .fetch_one(&self.pool)
            .await?;
        Ok(first.map(Timestamp::from_millis))
    }

    #[tracing::instrument(skip_all, fields(settlement_id = id))]
    async fn settlement(&self, id: i64) -> StoreResult<Option<SettlementRecord>> {
        let row = sqlx::query(sql::SETTLEMENT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(settlement_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(partner_id = partner_id, page = page.page))]
    async fn settlements(
        &self,
        partner_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementRecord>> {
        page_of(
            &self.pool,
            (sql::PARTNER_SETTLEMENTS, sql::COUNT_PARTNER_SETTLEMENTS),
            partner_id,
            page,
            settlement_from_row,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(settlement_id = settlement_id, page = page.page))]
    async fn settlement_lines(
        &self,
        settlement_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<SettlementLineRecord>> {
        page_of(
            &self.pool,
            (sql::SETTLEMENT_LINES_PAGE, sql::COUNT_SETTLEMENT_LINES),
            settlement_id,
            page,
            settlement_line_from_row,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(settlement_id = settlement_id))]
    async fn all_settlement_lines(
        &self,
        settlement_id: i64,
    ) -> StoreResult<Vec<SettlementLineRecord>> {
        let rows = sqlx::query(sql::ALL_SETTLEMENT_LINES)
            .bind(settlement_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(settlement_line_from_row).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn settlement_audit(&self) -> StoreResult<SettlementAudit> {
        let mut tx = snapshot(&self.pool).await?;
        let rows = sqlx::query(sql::STATEMENT_MISMATCHES)
            .fetch_all(&mut *tx)
            .await?;
        let settled_twice = sqlx::query_scalar(sql::SETTLED_TWICE)
            .fetch_all(&mut *tx)
            .await?;
        let unsettled_entries = sqlx::query_scalar(sql::UNSETTLED_ENTRIES)
            .fetch_all(&mut *tx)
            .await?;
        let sale_entry_mismatches = sqlx::query_scalar(sql::SALE_ENTRY_MISMATCHES)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SettlementAudit {
            mismatches: rows
                .iter()
                .map(statement_mismatch_from_row)
                .collect::<StoreResult<_>>()?,
            settled_twice,
            unsettled_entries,
            sale_entry_mismatches,
        })
    }
}

/// A page of rows keyed by `key` (`$1`; the list query takes `LIMIT $2 OFFSET $3`) and their
/// total, read in one transaction so the two agree.
async fn page_of<T>(
    pool: &sqlx::postgres::PgPool,
    (list, count): (&str, &str),
    key: i64,
    page: PageRequest,
    map: fn(&sqlx::postgres::PgRow) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(list)
        .bind(key)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(count)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Page {
        items: rows.iter().map(map).collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}
