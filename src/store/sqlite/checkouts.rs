//! Checkouts on SQLite, in write transactions (one writer at a time): opening one is an
//! insert that does nothing on a conflict (`checkouts_one_open`, the unique payment id),
//! then a read of what is there.

use super::conn::SqliteStore;
use crate::domain::Timestamp;
use crate::store::rows::checkout_from_row;
use crate::store::{sql, CheckoutRecord, CheckoutStatus, CheckoutStore, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::SqliteConnection;

#[async_trait]
impl CheckoutStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn open_checkout(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<CheckoutRecord> {
        let mut tx = self.write_tx().await?;
        insert(&mut tx, order_id, payment_id, amount, now).await?;
        let row = sqlx::query(sql::OPEN_CHECKOUT_OF_ORDER)
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| {
            // Only a payment id drawn twice gets here: 128 random bits make it a bug.
            StoreError::Corrupt(format!("no open checkout for order {order_id}"))
        })?;
        checkout_from_row(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn checkout(&self, payment_id: &str) -> StoreResult<Option<CheckoutRecord>> {
        let mut conn = self.reader.acquire().await?;
        by_payment_id(&mut conn, payment_id).await
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn adopt_checkout(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<CheckoutRecord> {
        // Under the write lock: two adoptions for one order take turns.
        let mut tx = self.write_tx().await?;
        if let Some(known) = by_payment_id(&mut tx, payment_id).await? {
            return Ok(known);
        }
        sqlx::query(sql::ABANDON_OTHER_OPEN_CHECKOUTS)
            .bind(order_id)
            .bind(payment_id)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        insert(&mut tx, order_id, payment_id, amount, now).await?;
        let adopted = by_payment_id(&mut tx, payment_id).await?;
        tx.commit().await?;
        adopted.ok_or_else(|| StoreError::Conflict("checkout"))
    }

    #[tracing::instrument(skip_all, fields(status = status.as_str()))]
    async fn resolve_checkout(
        &self,
        payment_id: &str,
        status: CheckoutStatus,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(sql::RESOLVE_CHECKOUT)
            .bind(payment_id)
            .bind(status.as_str())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn stale_checkouts(
        &self,
        cutoff: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<CheckoutRecord>> {
        let rows = sqlx::query(sql::STALE_CHECKOUTS)
            .bind(cutoff.millis())
            .bind(limit.max(0))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(checkout_from_row).collect()
    }

    #[tracing::instrument(skip_all, fields(order_id = order_id))]
    async fn approved_payment_id(&self, order_id: i64) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(sql::APPROVED_PAYMENT_ID)
            .bind(order_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn webhook_seen(&self, webhook_id: &str) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(sql::WEBHOOK_SEEN)
            .bind(webhook_id)
            .fetch_one(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn record_webhook(
        &self,
        webhook_id: &str,
        event_type: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let recorded = self
            .writer
            .execute(
                sqlx::query(sql::RECORD_WEBHOOK)
                    .bind(webhook_id)
                    .bind(event_type)
                    .bind(now.millis()),
            )
            .await?;
        Ok(recorded.rows_affected() == 1)
    }
}

async fn insert(
    conn: &mut SqliteConnection,
    order_id: i64,
    payment_id: &str,
    amount: i64,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_CHECKOUT)
        .bind(order_id)
        .bind(payment_id)
        .bind(amount)
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}

async fn by_payment_id(
    conn: &mut SqliteConnection,
    payment_id: &str,
) -> StoreResult<Option<CheckoutRecord>> {
    let row = sqlx::query(sql::CHECKOUT_BY_PAYMENT_ID)
        .bind(payment_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(checkout_from_row).transpose()
}
