//! Returns after confirmation on PostgreSQL: a seller takes back a partner order whose
//! purchase was confirmed, in one transaction (`FulfilmentStore::return_partner_order`).
//!
//! The order's row is locked first, as every step and cancellation of its parts does, so
//! two returns of the same part (a retry, two sellers at once) are decided one after the
//! other and the second finds it `refunded`.

use super::order_reads::load_partner_order;
use super::points::{refund_share_in, take_back_earned_in};
use super::{orders, outbox};
use crate::domain::events;
use crate::domain::Timestamp;
use crate::store::{sql, FulfilmentOutcome, StoreError, StoreResult};
use sqlx::postgres::{PgConnection, PgPool};

pub(super) async fn return_part(
    pool: &PgPool,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> StoreResult<FulfilmentOutcome> {
    let mut tx = pool.begin().await?;
    let owner: Option<(i64, i64)> = sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o JOIN partner_orders po ON po.order_id = o.id \
         WHERE po.id = $1 FOR UPDATE OF o",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((order_id, user_id)) = owner else {
        return Ok(FulfilmentOutcome::NotFound);
    };
    let returned = sqlx::query(sql::RETURN_PARTNER_ORDER)
        .bind(id)
        .bind(reason)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
    if returned.rows_affected() == 0 {
        // Nothing changed; the transaction rolls back when dropped.
        let current = load_partner_order(&mut tx, id).await?;
        return Ok(current.map_or(FulfilmentOutcome::NotFound, FulfilmentOutcome::Refused));
    }
    let part = load_partner_order(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("partner order {id} vanished")))?;
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
/// entry would pay the seller for goods they took back, so the return fails instead.
async fn book_refund_entry(conn: &mut PgConnection, id: i64, now: Timestamp) -> StoreResult<()> {
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
