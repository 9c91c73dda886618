//! Reading whole orders on SQLite: the order, its partner orders and their items, for the
//! order reads, the lifecycle and placement's replays; and one partner order, for its
//! sellers. A leaf of this backend.

use super::conn::json_ids;
use crate::store::rows::{order_from_row, partner_order_list_from_rows, partner_orders_from_rows};
use crate::store::{sql, OrderRecord, Page, PageRequest, PartnerOrderRecord, StoreResult};
use sqlx::SqliteConnection;
use std::collections::HashMap;

const ORDER_BY_ID: &str = concat!(
    "SELECT ",
    sql::order_columns!(),
    " FROM orders WHERE id = $1"
);

/// Newest first; every buyer's orders when `$1` is NULL.
const ORDERS_PAGE: &str = concat!(
    "SELECT ",
    sql::order_columns!(),
    " FROM orders WHERE ($1 IS NULL OR user_id = $1)
     ORDER BY id DESC LIMIT $2 OFFSET $3"
);

/// Partner orders with their items for many orders at once, ascending by partner id and
/// then product id.
pub(super) async fn partner_orders_of(
    conn: &mut SqliteConnection,
    order_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<PartnerOrderRecord>>> {
    let rows = sqlx::query(concat!(
        sql::partner_order_rows!(),
        " WHERE po.order_id IN (SELECT value FROM json_each($1))
         ORDER BY po.order_id, po.partner_id, oi.product_id"
    ))
    .bind(json_ids(order_ids.iter().copied()))
    .fetch_all(conn)
    .await?;
    partner_orders_from_rows(&rows)
}

/// One partner order with its items, for the sellers' steps, cancellations and returns.
pub(super) async fn load_partner_order(
    conn: &mut SqliteConnection,
    id: i64,
) -> StoreResult<Option<PartnerOrderRecord>> {
    let rows = sqlx::query(sql::PARTNER_ORDER_BY_ID)
        .bind(id)
        .fetch_all(conn)
        .await?;
    Ok(partner_order_list_from_rows(&rows)?.pop())
}

pub(super) async fn load_order(
    conn: &mut SqliteConnection,
    id: i64,
) -> StoreResult<Option<OrderRecord>> {
    let row = sqlx::query(ORDER_BY_ID)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut order = order_from_row(&row)?;
    order.partner_orders = partner_orders_of(conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok(Some(order))
}

/// A page of whole orders, newest first; all orders when `user_id` is `None`.
pub(super) async fn list_orders(
    conn: &mut SqliteConnection,
    user_id: Option<i64>,
    page: PageRequest,
) -> StoreResult<Page<OrderRecord>> {
    let rows = sqlx::query(ORDERS_PAGE)
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *conn)
        .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE ($1 IS NULL OR user_id = $1)")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await?;
    let mut items = rows
        .iter()
        .map(order_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let ids: Vec<i64> = items.iter().map(|o| o.id).collect();
    let mut partner_orders = partner_orders_of(conn, &ids).await?;
    for order in &mut items {
        order.partner_orders = partner_orders.remove(&order.id).unwrap_or_default();
    }
    Ok(Page {
        items,
        page: page.page,
        size: page.size,
        total,
    })
}
