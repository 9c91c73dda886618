//! The settlement benchmark's fill and bare aggregate on SQLite: the rows come from a
//! recursive series, all in one write transaction.

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::{sql, SettlementBench, SettlementDay, StoreError, StoreResult};
use async_trait::async_trait;

/// `g(i)`, 1 to `$1`.
macro_rules! series {
    () => {
        "(WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $1)
          SELECT i FROM g) AS g"
    };
}

#[async_trait]
impl SettlementBench for SqliteStore {
    async fn fill_confirmed_lines(
        &self,
        tag: &str,
        partners: i64,
        lines: i64,
        day: &SettlementDay,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query_scalar(sql::bench_partners!(series!()))
            .bind(partners)
            .bind(tag)
            .bind(now.millis())
            .fetch_all(&mut *tx)
            .await?;
        let first_partner = ids.iter().copied().min().ok_or(StoreError::NotFound)?;
        let buyer: i64 = sqlx::query_scalar(sql::BENCH_BUYER)
            .bind(format!("{tag}@bench.invalid"))
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(sql::bench_orders!(series!()))
            .bind(lines)
            .bind(buyer)
            .bind(format!("{tag}-"))
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        let first_order: i64 = sqlx::query_scalar("SELECT MIN(id) FROM orders WHERE user_id = $1")
            .bind(buyer)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(sql::BENCH_PARTNER_ORDERS)
            .bind(buyer)
            .bind(first_partner)
            .bind(partners)
            .bind(day.from.millis())
            .bind(first_order)
            .bind(day.to.millis() - day.from.millis())
            .bind(lines)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::BENCH_SALE_ENTRIES)
            .bind(buyer)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.writer.execute(sqlx::query("ANALYZE")).await?;
        Ok(())
    }

    async fn bare_settlement_aggregate(&self, day: &SettlementDay) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::BENCH_SCRATCH).execute(&mut *tx).await?;
        let made = sqlx::query(sql::BENCH_BARE_AGGREGATE)
            .bind(day.from.millis())
            .bind(day.to.millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::BENCH_DROP_SCRATCH)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(i64::try_from(made.rows_affected()).unwrap_or(i64::MAX))
    }
}
