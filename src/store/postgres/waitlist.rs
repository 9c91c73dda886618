//! Waitlists on PostgreSQL. Every status change is `UPDATE … WHERE status = <expected>`:
//! two nodes changing one entry at once queue on its row lock, and the second re-checks the
//! condition against the first's committed row and changes nothing. Several entries are
//! changed in ascending id order, so two such transactions cannot deadlock. The event is
//! appended last, as `outbox::append` requires.

use super::conn::{snapshot, PgStore};
use super::outbox;
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::Timestamp;
use crate::store::rows::{entry_from_row, order_status, positioned_entry_from_row};
use crate::store::{
    sql, JoinOutcome, Page, PageRequest, StoreError, StoreResult, WaitlistBreach,
    WaitlistEntryRecord, WaitlistStore,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};

async fn load_entry(conn: &mut PgConnection, id: i64) -> StoreResult<Option<WaitlistEntryRecord>> {
    let row = sqlx::query(sql::ENTRY_BY_ID)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(positioned_entry_from_row).transpose()
}

/// `waiting|offered → to`, returning the entry as it now is, or `None` when it was not in
/// `from`. `order_id` is set when given, else kept.
async fn change_status(
    conn: &mut PgConnection,
    entry_id: i64,
    from: WaitlistStatus,
    to: WaitlistStatus,
    order_id: Option<i64>,
    now: Timestamp,
) -> StoreResult<Option<WaitlistEntryRecord>> {
    let row = sqlx::query(sql::CHANGE_ENTRY_STATUS)
        .bind(entry_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(order_id)
        .bind(now.millis())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(entry_from_row).transpose()
}

/// One conditional status change and its event, in one transaction.
async fn change_and_announce(
    pool: &PgPool,
    entry_id: i64,
    (from, to): (WaitlistStatus, WaitlistStatus),
    order_id: Option<i64>,
    (pay_by, reason): (Option<Timestamp>, Option<&str>),
    now: Timestamp,
) -> StoreResult<Option<WaitlistEntryRecord>> {
    let mut tx = pool.begin().await?;
    let Some(entry) = change_status(&mut tx, entry_id, from, to, order_id, now).await? else {
        return Ok(None);
    };
    outbox::append(&mut tx, &[entry.event(pay_by, reason)], now).await?;
    tx.commit().await?;
    Ok(Some(entry))
}

async fn join(
    pool: &PgPool,
    product_id: i64,
    user_id: i64,
    quantity: i64,
    now: Timestamp,
) -> StoreResult<JoinOutcome> {
    let mut tx = pool.begin().await?;
    // A concurrent second join of the same buyer waits on the partial UNIQUE index entry
    // of the first, then does nothing.
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO waitlist_entries \
             (product_id, user_id, quantity, status, created_at, updated_at) \
         SELECT id, $2, $3, 'waiting', $4, $4 FROM products WHERE id = $1 \
         ON CONFLICT (product_id, user_id) WHERE status IN ('waiting', 'offered') DO NOTHING \
         RETURNING id",
    )
    .bind(product_id)
    .bind(user_id)
    .bind(quantity)
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)")
                .bind(product_id)
                .fetch_one(&mut *tx)
                .await?;
        return Ok(if known {
            JoinOutcome::AlreadyWaitlisted
        } else {
            JoinOutcome::UnknownProduct
        });
    };
    let entry = load_entry(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("waitlist entry {id} vanished")))?;
    outbox::append(&mut tx, &[entry.event(None, None)], now).await?;
    tx.commit().await?;
    Ok(JoinOutcome::Joined(entry))
}

async fn user_waitlist(
    pool: &PgPool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<WaitlistEntryRecord>> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sql::USER_WAITLIST_PAGE)
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_USER_WAITLIST)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(positioned_entry_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}

/// See `WaitlistStore::settle_offers`. An order leaves `pending_payment` for good and
/// `for_offer` maps every later status the same way, so deciding from a plain read is safe;
/// each update re-checks that its entry is still `offered`.
async fn settle_offers(
    pool: &PgPool,
    limit: i64,
    now: Timestamp,
) -> StoreResult<Vec<WaitlistEntryRecord>> {
    let due: Vec<(i64, String)> = sqlx::query_as(sql::OFFERS_TO_SETTLE)
        .bind(limit.max(0))
        .fetch_all(pool)
        .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let mut settled = Vec::with_capacity(due.len());
    for (entry_id, order_status_raw) in due {
        let to = WaitlistStatus::for_offer(order_status(&order_status_raw)?);
        let from = WaitlistStatus::Offered;
        if let Some(entry) = change_status(&mut tx, entry_id, from, to, None, now).await? {
            settled.push(entry);
        }
    }
    let events: Vec<_> = settled.iter().map(|e| e.event(None, None)).collect();
    outbox::append(&mut tx, &events, now).await?;
    tx.commit().await?;
    Ok(settled)
}

async fn waitlist_audit(pool: &PgPool) -> StoreResult<Vec<WaitlistBreach>> {
    let rows: Vec<(i64, i64, String, Option<i64>)> =
        sqlx::query_as(sql::WAITLIST_AUDIT).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(entry_id, user_id, status, order_id)| WaitlistBreach {
            entry_id,
            user_id,
            status,
            order_id,
        })
        .collect())
}

#[async_trait]
impl WaitlistStore for PgStore {
    #[tracing::instrument(skip_all, fields(product_id = product_id, user_id = user_id))]
    async fn join_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        quantity: i64,
        now: Timestamp,
    ) -> StoreResult<JoinOutcome> {
        join(&self.pool, product_id, user_id, quantity, now).await
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, user_id = user_id))]
    async fn leave_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let waiting: Option<i64> = sqlx::query_scalar(sql::WAITING_ENTRY_OF)
            .bind(product_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(entry_id) = waiting else {
            return Ok(None);
        };
        let change = (WaitlistStatus::Waiting, WaitlistStatus::Left);
        change_and_announce(&self.pool, entry_id, change, None, (None, None), now).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn user_waitlist(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<WaitlistEntryRecord>> {
        user_waitlist(&self.pool, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(entry_id = id))]
    async fn waitlist_entry(&self, id: i64) -> StoreResult<Option<WaitlistEntryRecord>> {
        let mut conn = self.pool.acquire().await?;
        load_entry(&mut conn, id).await
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id))]
    async fn next_waiting(&self, product_id: i64) -> StoreResult<Option<WaitlistEntryRecord>> {
        let row = sqlx::query(sql::NEXT_WAITING)
            .bind(product_id)
            .fetch_optional(&self.pool)
            .await?;
        let mut entry = row.as_ref().map(entry_from_row).transpose()?;
        if let Some(entry) = &mut entry {
            entry.position = Some(1);
        }
        Ok(entry)
    }

    #[tracing::instrument(skip_all, fields(products = product_ids.len()))]
    async fn products_with_line(&self, product_ids: &[i64]) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT product_id FROM waitlist_entries \
             WHERE status = 'waiting' AND product_id = ANY($1) ORDER BY product_id",
        )
        .bind(product_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn products_to_offer(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::PRODUCTS_TO_OFFER)
            .bind(limit.max(0))
            .bind(now.millis())
            .fetch_all(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(entry_id = entry_id, order_id = order_id))]
    async fn link_offer(
        &self,
        entry_id: i64,
        order_id: i64,
        status: WaitlistStatus,
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let pay_by = (status == WaitlistStatus::Offered).then_some(pay_by);
        let change = (WaitlistStatus::Waiting, status);
        change_and_announce(
            &self.pool,
            entry_id,
            change,
            Some(order_id),
            (pay_by, None),
            now,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(entry_id = entry_id, reason = reason))]
    async fn skip_waiting(
        &self,
        entry_id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let change = (WaitlistStatus::Waiting, WaitlistStatus::Skipped);
        change_and_announce(
            &self.pool,
            entry_id,
            change,
            None,
            (None, Some(reason)),
            now,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn settle_offers(
        &self,
        limit: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<WaitlistEntryRecord>> {
        settle_offers(&self.pool, limit, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn waitlist_audit(&self) -> StoreResult<Vec<WaitlistBreach>> {
        waitlist_audit(&self.pool).await
    }
}
