//! Dead letters on SQLite: the shared statements of `sql.rs` and the shared row
//! mapping, writes in a write transaction.

use super::conn::{snapshot, SqliteStore};
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::Timestamp;
use crate::store::rows::dead_letter_from_row;
use crate::store::{
    sql, DeadLetterRecord, DeadLetterStore, NewDeadLetter, Page, PageRequest, StoreResult,
};
use async_trait::async_trait;

#[async_trait]
impl DeadLetterStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(handler = %letter.handler, topic = %letter.topic, offset = letter.offset))]
    async fn insert_dead_letter(
        &self,
        letter: &NewDeadLetter,
        now: Timestamp,
    ) -> StoreResult<DeadLetterRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sql::INSERT_DEAD_LETTER)
            .bind(&letter.handler)
            .bind(&letter.topic)
            .bind(i64::from(letter.partition))
            .bind(letter.offset)
            .bind(&letter.key)
            .bind(&letter.message)
            .bind(letter.event_id)
            .bind(&letter.error)
            .bind(i64::from(letter.attempts))
            .bind(letter.first_failed_at.millis())
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        dead_letter_from_row(&row)
    }

    #[tracing::instrument(skip_all, fields(id = id))]
    async fn dead_letter(&self, id: i64) -> StoreResult<Option<DeadLetterRecord>> {
        let row = sqlx::query(sql::DEAD_LETTER_BY_ID)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(dead_letter_from_row).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn dead_letters(
        &self,
        status: Option<DeadLetterStatus>,
        page: PageRequest,
    ) -> StoreResult<Page<DeadLetterRecord>> {
        let status = status.map(DeadLetterStatus::as_str);
        let mut tx = snapshot(&self.reader).await?;
        let rows = sqlx::query(sql::DEAD_LETTERS_PAGE)
            .bind(status)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_DEAD_LETTERS)
            .bind(status)
            .fetch_one(&mut *tx)
            .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(dead_letter_from_row)
                .collect::<StoreResult<_>>()?,
            page: page.page,
            size: page.size,
            total,
        })
    }

    #[tracing::instrument(skip_all, fields(id = id, status = status.as_str()))]
    async fn settle_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let settled = sqlx::query(sql::SETTLE_DEAD_LETTER)
            .bind(id)
            .bind(status.as_str())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(settled.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(id = id, automatic = automatic))]
    async fn dead_letter_failed(
        &self,
        id: i64,
        error: &str,
        automatic: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::DEAD_LETTER_FAILED)
            .bind(id)
            .bind(error)
            .bind(i64::from(automatic))
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(max_retries = max_retries))]
    async fn retryable_dead_letters(
        &self,
        max_retries: i32,
        limit: i64,
    ) -> StoreResult<Vec<DeadLetterRecord>> {
        let rows = sqlx::query(sql::RETRYABLE_DEAD_LETTERS)
            .bind(i64::from(max_retries))
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(dead_letter_from_row).collect()
    }
}
