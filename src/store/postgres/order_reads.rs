//! Reading whole orders on PostgreSQL: the order, its partner orders and their items, for
//! the order reads, the lifecycle and placement's replays; and one partner order, for its
//! sellers. Of this backend it imports only `conn`.

use super::conn::snapshot;
use crate::store::rows::{order_from_row, partner_order_list_from_rows, partner_orders_from_rows};
use crate::store::{sql, OrderRecord, Page, PageRequest, PartnerOrderRecord, StoreResult};
use sqlx::postgres::{PgConnection, PgPool};

/// Loads whole orders (partner orders and items included) in two statements whatever
/// their number; returned in ascending id order, missing ids skipped.
pub(super) async fn load_orders(
    conn: &mut PgConnection,
    ids: &[i64],
) -> StoreResult<Vec<OrderRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        sql::order_columns!(),
        " FROM orders WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .iter()
        .map(order_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    // Partner orders ascending by partner id, each with its items ascending by product id.
    let rows = sqlx::query(concat!(
        sql::partner_order_rows!(),
        " WHERE po.order_id = ANY($1) ORDER BY po.order_id, po.partner_id, oi.product_id"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut partner_orders = partner_orders_from_rows(&rows)?;
    for order in &mut orders {
        order.partner_orders = partner_orders.remove(&order.id).unwrap_or_default();
    }
    Ok(orders)
}

/// One partner order with its items, for the sellers' steps, cancellations and returns.
pub(super) async fn load_partner_order(
    conn: &mut PgConnection,
    id: i64,
) -> StoreResult<Option<PartnerOrderRecord>> {
    let rows = sqlx::query(sql::PARTNER_ORDER_BY_ID)
        .bind(id)
        .fetch_all(conn)
        .await?;
    Ok(partner_order_list_from_rows(&rows)?.pop())
}

pub(super) async fn load_order(
    conn: &mut PgConnection,
    id: i64,
) -> StoreResult<Option<OrderRecord>> {
    Ok(load_orders(conn, &[id]).await?.pop())
}

/// Two statement texts rather than `($1 IS NULL OR user_id = $1)`, so a buyer's page uses
/// the `(user_id, id)` index under a cached generic plan.
pub(super) async fn list_orders(
    pool: &PgPool,
    user_id: Option<i64>,
    page: PageRequest,
) -> StoreResult<Page<OrderRecord>> {
    let mut tx = snapshot(pool).await?;
    let (ids, total): (Vec<i64>, i64) = match user_id {
        Some(user_id) => {
            let ids = sqlx::query_scalar(
                "SELECT id FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            )
            .bind(user_id)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *tx)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            (ids, total)
        }
        None => {
            let ids =
                sqlx::query_scalar("SELECT id FROM orders ORDER BY id DESC LIMIT $1 OFFSET $2")
                    .bind(page.size)
                    .bind(page.offset())
                    .fetch_all(&mut *tx)
                    .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
                .fetch_one(&mut *tx)
                .await?;
            (ids, total)
        }
    };
    let mut items = load_orders(&mut tx, &ids).await?;
    items.reverse(); // loaded ascending; the page is newest first
    Ok(Page {
        items,
        page: page.page,
        size: page.size,
        total,
    })
}
