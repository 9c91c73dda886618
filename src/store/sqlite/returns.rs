//! Returns after confirmation on SQLite: a seller takes back a partner order whose purchase
//! was confirmed, in one write transaction (`FulfilmentStore::return_partner_order`). The
//! single writer makes it atomic; the conditional `UPDATE … WHERE status = 'confirmed'`
//! makes a second return of the same part change nothing.

use super::conn::SqliteStore;
use super::order_reads::load_partner_order;
use super::points::{refund_share_in, take_back_earned_in};
use super::{orders, outbox};
use crate::domain::events;
use crate::domain::Timestamp;
use crate::store::{sql, FulfilmentOutcome, StoreError, StoreResult};
use sqlx::SqliteConnection;

pub(super) async fn return_part(
    store: &SqliteStore,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> StoreResult<FulfilmentOutcome> {
    let mut tx = store.write_tx().await?;
    let returned: Option<i64> = sqlx::query_scalar(sql::RETURN_PARTNER_ORDER)
        .bind(id)
        .bind(reason)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(order_id) = returned else {
        let current = load_partner_order(&mut tx, id).await?;
        tx.rollback().await?;
        return Ok(current.map_or(FulfilmentOutcome::NotFound, FulfilmentOutcome::Refused));
    };
    let part = load_partner_order(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
    let user_id: i64 = sqlx::query_scalar(sql::ORDER_OWNER)
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
    let mut outgoing = Vec::new();
    if part.points_used > 0 {
        outgoing.push(refund_share_in(&mut tx, order_id, part.points_used, now).await?);
    }
    orders::book_refund(&mut tx, order_id, part.payable, now).await?;
    book_refund_entry(&mut tx, id, now).await?;
    let why = format!("partner order {id} returned");
    let owner = (order_id, user_id);
    outgoing.extend(take_back_earned_in(&mut tx, owner, part.payable, &why, now).await?);
    outgoing.push(events::partner_order_changed(
        events::PARTNER_ORDER_RETURNED,
        &part.changed(user_id, now),
    ));
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(FulfilmentOutcome::Done(part))
}

/// The seller's books: a `refund` entry negating the part's `sale` entry, recorded now. A
/// confirmed part without its sale entry was never in the books; refunding it without an
/// entry would pay the seller for goods they took back, so the return fails instead (the
/// write transaction rolls back when dropped).
async fn book_refund_entry(
    conn: &mut SqliteConnection,
    id: i64,
    now: Timestamp,
) -> StoreResult<()> {
    let booked = sqlx::query(sql::INSERT_REFUND_ENTRY)
        .bind(id)
        .bind(now.millis())
        .execute(conn)
        .await?;
    if booked.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "partner order {id} was confirmed without a sale settlement entry"
        )));
    }
    Ok(())
}
