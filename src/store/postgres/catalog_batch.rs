//! Creating many products in one transaction on PostgreSQL: the product ids drawn from
//! their identity sequence up front (so each input knows its id without matching rows
//! back by a key products do not have), then one `UNNEST` statement per table, and the
//! events last, as `outbox::append` requires. The rows are the ones `insert_product`
//! writes for each product, in the same order.

use super::outbox;
use super::stock::{self, Movement};
use crate::domain::events::NewEvent;
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::catalog::INITIAL_STOCK_MEMO;
use crate::store::{NewProduct, ProductRecord, StoreError, StoreResult};
use sqlx::postgres::PgConnection;

/// Writes `products` inside the caller's transaction; their records in order.
pub(super) async fn insert_products(
    conn: &mut PgConnection,
    products: &[NewProduct],
    now: Timestamp,
) -> StoreResult<Vec<ProductRecord>> {
    let ids = draw_ids(conn, products.len()).await?;
    insert_rows(conn, products, &ids, now).await?;
    let mut opening = Vec::new();
    let mut events: Vec<NewEvent> = Vec::with_capacity(products.len() * 2);
    for (product, &id) in products.iter().zip(&ids) {
        if product.stock > 0 {
            opening.push(Movement {
                product_id: id,
                kind: MovementKind::Inbound,
                quantity: product.stock,
                order_id: None,
                memo: Some(INITIAL_STOCK_MEMO),
                on_hand_after: product.stock,
                held_after: 0,
            });
        }
        events.extend(product.creation_events(id));
    }
    stock::insert_movements(conn, &opening, now).await?;
    outbox::append(conn, &events, now).await?;
    Ok(products
        .iter()
        .zip(&ids)
        .map(|(product, &id)| product.created(id, now))
        .collect())
}

/// `count` fresh product ids, ascending. A sequence never hands out an id twice, whoever
/// else draws from it meanwhile; sorting makes the ids follow the input's order, as single
/// creates one after another would.
async fn draw_ids(conn: &mut PgConnection, count: usize) -> StoreResult<Vec<i64>> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('products', 'id')) FROM generate_series(1, $1)",
    )
    .bind(count as i64)
    .fetch_all(&mut *conn)
    .await?;
    if ids.len() != count {
        return Err(StoreError::Corrupt(format!(
            "drew {} product ids for {count} products",
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The products and their stock accounts, opening at their final balance (the inbound
/// movement written next explains it), one statement each.
async fn insert_rows(
    conn: &mut PgConnection,
    products: &[NewProduct],
    ids: &[i64],
    now: Timestamp,
) -> StoreResult<()> {
    let partner_ids: Vec<i64> = products.iter().map(|p| p.partner_id).collect();
    let names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
    let prices: Vec<i64> = products.iter().map(|p| p.price).collect();
    let release_at: Vec<i64> = products.iter().map(|p| p.release_at.millis()).collect();
    let max_per_user: Vec<Option<i64>> = products.iter().map(|p| p.max_per_user).collect();
    let stock: Vec<i64> = products.iter().map(|p| p.stock).collect();
    // The ids were drawn from the column's own sequence, hence OVERRIDING SYSTEM VALUE.
    sqlx::query(
        "INSERT INTO products (id, partner_id, name, price, release_at, max_per_user, \
             created_at, updated_at) \
         OVERRIDING SYSTEM VALUE \
         SELECT p.id, p.partner_id, p.name, p.price, p.release_at, p.max_per_user, $7, $7 \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::bigint[]) AS p(id, partner_id, name, price, release_at, max_per_user)",
    )
    .bind(ids)
    .bind(&partner_ids)
    .bind(&names)
    .bind(&prices)
    .bind(&release_at)
    .bind(&max_per_user)
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO stock (product_id, on_hand, held) \
         SELECT s.product_id, s.on_hand, 0 FROM UNNEST($1::bigint[], $2::bigint[]) \
              AS s(product_id, on_hand)",
    )
    .bind(ids)
    .bind(&stock)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
