//! Waitlists on SQLite. Every status change is `UPDATE … WHERE status = <expected>` in a
//! write transaction with its event: SQLite's single writer makes each one atomic, and the
//! condition makes a second attempt (another node on the same file, a retry) change nothing.
//! Reads that usually find nothing to do (offers to settle) run on the reader pool first, so
//! the worker does not take the write lock from the placement writer for nothing.

use super::{write_event, SqliteStore, Tx};
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::{OrderStatus, Timestamp};
use crate::store::error::violates_unique;
use crate::store::{
    JoinOutcome, Page, PageRequest, StoreError, StoreResult, WaitlistBreach, WaitlistEntryRecord,
    WaitlistStore,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

const COLUMNS: &str = "id, product_id, user_id, quantity, status, order_id, created_at, updated_at";

/// The entry's columns (table alias `e`) and, for a waiting entry, its place in line.
const SELECT_WITH_POSITION: &str =
    "SELECT e.id, e.product_id, e.user_id, e.quantity, e.status, e.order_id, e.created_at,
         e.updated_at,
         CASE WHEN e.status = 'waiting' THEN
             (SELECT COUNT(*) FROM waitlist_entries w
              WHERE w.product_id = e.product_id AND w.status = 'waiting' AND w.id <= e.id)
         END AS position
     FROM waitlist_entries e";

fn entry_from_row(row: &SqliteRow) -> StoreResult<WaitlistEntryRecord> {
    let status: String = row.try_get("status")?;
    Ok(WaitlistEntryRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        user_id: row.try_get("user_id")?,
        quantity: row.try_get("quantity")?,
        status: WaitlistStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("waitlist status {status:?}")))?,
        order_id: row.try_get("order_id")?,
        position: None,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

fn positioned_from_row(row: &SqliteRow) -> StoreResult<WaitlistEntryRecord> {
    let mut entry = entry_from_row(row)?;
    entry.position = row.try_get("position")?;
    Ok(entry)
}

async fn load_entry(
    conn: &mut SqliteConnection,
    id: i64,
) -> StoreResult<Option<WaitlistEntryRecord>> {
    let row = sqlx::query(&format!("{SELECT_WITH_POSITION} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(positioned_from_row).transpose()
}

/// `UPDATE … SET status = $to … WHERE <key> AND status = $from`, returning the entry as it
/// now is, or `None` when it was not in `from`.
async fn change_status(
    tx: &mut Tx,
    entry_id: i64,
    from: WaitlistStatus,
    to: WaitlistStatus,
    order_id: Option<i64>,
    now: Timestamp,
) -> StoreResult<Option<WaitlistEntryRecord>> {
    let row = sqlx::query(&format!(
        "UPDATE waitlist_entries SET status = $3, order_id = COALESCE($4, order_id),
             updated_at = $5
         WHERE id = $1 AND status = $2 RETURNING {COLUMNS}"
    ))
    .bind(entry_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(order_id)
    .bind(now.millis())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(entry_from_row).transpose()
}

impl SqliteStore {
    /// Applies one conditional status change and its event in a write transaction.
    async fn change_and_announce(
        &self,
        entry_id: i64,
        from: WaitlistStatus,
        to: WaitlistStatus,
        order_id: Option<i64>,
        (pay_by, reason): (Option<Timestamp>, Option<&str>),
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let mut tx = self.write_tx().await?;
        let Some(entry) = change_status(&mut tx, entry_id, from, to, order_id, now).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        write_event(&mut tx, &entry.event(pay_by, reason), now.millis()).await?;
        tx.commit().await?;
        Ok(Some(entry))
    }
}

#[async_trait]
impl WaitlistStore for SqliteStore {
    async fn join_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        quantity: i64,
        now: Timestamp,
    ) -> StoreResult<JoinOutcome> {
        let mut tx = self.write_tx().await?;
        // The partial UNIQUE index (product_id, user_id) of active entries refuses a second.
        let inserted: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO waitlist_entries
                 (product_id, user_id, quantity, status, created_at, updated_at)
             SELECT id, $2, $3, 'waiting', $4, $4 FROM products WHERE id = $1
             RETURNING id",
        )
        .bind(product_id)
        .bind(user_id)
        .bind(quantity)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await;
        let id = match inserted {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(JoinOutcome::UnknownProduct),
            Err(e) if violates_unique(&e, "waitlist_entries_active") => {
                return Ok(JoinOutcome::AlreadyWaitlisted)
            }
            Err(e) => return Err(e.into()),
        };
        let entry = load_entry(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("waitlist entry {id} vanished")))?;
        write_event(&mut tx, &entry.event(None, None), now.millis()).await?;
        tx.commit().await?;
        Ok(JoinOutcome::Joined(entry))
    }

    async fn leave_waitlist(
        &self,
        product_id: i64,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM waitlist_entries
             WHERE product_id = $1 AND user_id = $2 AND status = 'waiting'",
        )
        .bind(product_id)
        .bind(user_id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(entry_id) = waiting else {
            return Ok(None);
        };
        let (from, to) = (WaitlistStatus::Waiting, WaitlistStatus::Left);
        self.change_and_announce(entry_id, from, to, None, (None, None), now)
            .await
    }

    async fn user_waitlist(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<WaitlistEntryRecord>> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(&format!(
            "{SELECT_WITH_POSITION} WHERE e.user_id = $1 ORDER BY e.id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *conn)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM waitlist_entries WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(positioned_from_row)
                .collect::<StoreResult<_>>()?,
            page: page.page,
            size: page.size,
            total,
        })
    }

    async fn waitlist_entry(&self, id: i64) -> StoreResult<Option<WaitlistEntryRecord>> {
        let mut conn = self.reader.acquire().await?;
        load_entry(&mut conn, id).await
    }

    async fn next_waiting(&self, product_id: i64) -> StoreResult<Option<WaitlistEntryRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM waitlist_entries
             WHERE product_id = $1 AND status = 'waiting' ORDER BY id LIMIT 1"
        ))
        .bind(product_id)
        .fetch_optional(&self.reader)
        .await?;
        let mut entry = row.as_ref().map(entry_from_row).transpose()?;
        if let Some(entry) = &mut entry {
            entry.position = Some(1);
        }
        Ok(entry)
    }

    async fn products_to_offer(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT e.product_id FROM waitlist_entries e
             JOIN stock s ON s.product_id = e.product_id
             JOIN products p ON p.id = e.product_id
             WHERE e.status = 'waiting' AND s.on_hand > s.held AND p.release_at <= $2
             ORDER BY e.product_id LIMIT $1",
        )
        .bind(limit)
        .bind(now.millis())
        .fetch_all(&self.reader)
        .await?)
    }

    async fn link_offer(
        &self,
        entry_id: i64,
        order_id: i64,
        status: WaitlistStatus,
        pay_by: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let pay_by = (status == WaitlistStatus::Offered).then_some(pay_by);
        let from = WaitlistStatus::Waiting;
        self.change_and_announce(entry_id, from, status, Some(order_id), (pay_by, None), now)
            .await
    }

    async fn skip_waiting(
        &self,
        entry_id: i64,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Option<WaitlistEntryRecord>> {
        let (from, to) = (WaitlistStatus::Waiting, WaitlistStatus::Skipped);
        self.change_and_announce(entry_id, from, to, None, (None, Some(reason)), now)
            .await
    }

    async fn settle_offers(
        &self,
        limit: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<WaitlistEntryRecord>> {
        // An order leaves `pending_payment` for good, and `for_offer` maps every later
        // status the same way, so deciding from this read outside the write is safe; the
        // write re-checks that the entry is still `offered`.
        let due: Vec<(i64, String)> = sqlx::query_as(
            "SELECT e.id, o.status FROM waitlist_entries e JOIN orders o ON o.id = e.order_id
             WHERE e.status = 'offered' AND o.status <> 'pending_payment'
             ORDER BY e.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let mut settled = Vec::with_capacity(due.len());
        for (entry_id, order_status) in due {
            let order_status = OrderStatus::parse(&order_status)
                .ok_or_else(|| StoreError::Corrupt(format!("order status {order_status:?}")))?;
            let to = WaitlistStatus::for_offer(order_status);
            let from = WaitlistStatus::Offered;
            if let Some(entry) = change_status(&mut tx, entry_id, from, to, None, now).await? {
                write_event(&mut tx, &entry.event(None, None), now.millis()).await?;
                settled.push(entry);
            }
        }
        tx.commit().await?;
        Ok(settled)
    }

    async fn waitlist_audit(&self) -> StoreResult<Vec<WaitlistBreach>> {
        let rows: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(WAITLIST_AUDIT)
            .fetch_all(&self.reader)
            .await?;
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
}

/// Entries that reference an order (or must: offered, fulfilled) which is not that buyer's
/// order of exactly that product and quantity.
const WAITLIST_AUDIT: &str = "SELECT e.id, e.user_id, e.status, e.order_id
     FROM waitlist_entries e
     LEFT JOIN orders o ON o.id = e.order_id AND o.user_id = e.user_id
     LEFT JOIN order_items oi ON oi.order_id = o.id AND oi.product_id = e.product_id
         AND oi.quantity = e.quantity
     WHERE (e.order_id IS NOT NULL OR e.status IN ('offered', 'fulfilled')) AND oi.id IS NULL
     ORDER BY e.id";
