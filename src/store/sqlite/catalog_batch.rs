//! Creating many products in one transaction on SQLite: ids assigned here (the
//! transaction holds SQLite's only write lock from its first read to its commit, as
//! placement's batches do), then one `INSERT … SELECT … FROM json_each($1)` per table.
//! The rows are the ones `insert_product` writes for each product, in the same order.

use super::conn::{to_json, WriteTx};
use crate::domain::events::NewEvent;
use crate::domain::Timestamp;
use crate::store::catalog::INITIAL_STOCK_MEMO;
use crate::store::{NewProduct, ProductRecord, StoreResult};

/// id, partner_id, name, price, release_at, max_per_user
type ProductRow<'a> = (i64, i64, &'a str, i64, i64, Option<i64>);

/// Everything the batch writes, as JSON-serialisable tuples.
#[derive(Default)]
struct Rows<'a> {
    products: Vec<ProductRow<'a>>,
    /// product_id, on_hand
    stock: Vec<[i64; 2]>,
    /// id, product_id, quantity (= on_hand_after)
    inbound: Vec<[i64; 3]>,
    /// id, aggregate_type, aggregate_id, event_type, payload
    events: Vec<(i64, &'static str, i64, &'static str, String)>,
}

/// Writes `products` inside the caller's write transaction; their records in order.
pub(super) async fn insert_products(
    tx: &mut WriteTx,
    products: &[NewProduct],
    now: Timestamp,
) -> StoreResult<Vec<ProductRecord>> {
    let (mut product_id, mut movement_id, mut event_id) = next_ids(tx).await?;
    let mut rows = Rows::default();
    let mut records = Vec::with_capacity(products.len());
    for product in products {
        let id = product_id;
        product_id += 1;
        rows.products.push((
            id,
            product.partner_id,
            product.name.as_str(),
            product.price,
            product.release_at.millis(),
            product.max_per_user,
        ));
        rows.stock.push([id, product.stock]);
        if product.stock > 0 {
            rows.inbound.push([movement_id, id, product.stock]);
            movement_id += 1;
        }
        for event in product.creation_events(id) {
            let NewEvent {
                aggregate_type,
                aggregate_id,
                event_type,
                payload,
            } = event;
            rows.events
                .push((event_id, aggregate_type, aggregate_id, event_type, payload));
            event_id += 1;
        }
        records.push(product.created(id, now));
    }
    write(tx, &rows, now).await?;
    Ok(records)
}

/// The next free id of the three tables whose ids the batch assigns. `INTEGER PRIMARY KEY`
/// without AUTOINCREMENT: SQLite itself would pick `MAX(id) + 1`, so these are the ids
/// single inserts would have drawn.
async fn next_ids(tx: &mut WriteTx) -> StoreResult<(i64, i64, i64)> {
    let (product, movement, event): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM products),
                (SELECT COALESCE(MAX(id), 0) FROM stock_movements),
                (SELECT COALESCE(MAX(id), 0) FROM outbox)",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok((product + 1, movement + 1, event + 1))
}

/// One statement per table, parents before children (foreign keys are enforced). The
/// account opens at its final balance; the ledger row explains it (`on_hand_after` =
/// the inbound quantity), as the single path's inbound onto an empty account does.
async fn write(tx: &mut WriteTx, rows: &Rows<'_>, now: Timestamp) -> StoreResult<()> {
    let statements: [(&str, String, Option<&str>); 4] = [
        (
            "INSERT INTO products (id, partner_id, name, price, release_at, max_per_user,
                 created_at, updated_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                 value ->> 5, $2, $2
             FROM json_each($1)",
            to_json(&rows.products),
            None,
        ),
        (
            "INSERT INTO stock (product_id, on_hand, held)
             SELECT value ->> 0, value ->> 1, 0 FROM json_each($1)",
            to_json(&rows.stock),
            None,
        ),
        (
            "INSERT INTO stock_movements (id, product_id, kind, quantity, order_id, memo,
                 on_hand_after, held_after, created_at)
             SELECT value ->> 0, value ->> 1, 'inbound', value ->> 2, NULL, $3,
                 value ->> 2, 0, $2
             FROM json_each($1)",
            to_json(&rows.inbound),
            Some(INITIAL_STOCK_MEMO),
        ),
        (
            "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2
             FROM json_each($1)",
            to_json(&rows.events),
            None,
        ),
    ];
    for (sql, json, memo) in statements {
        let mut query = sqlx::query(sql).bind(json).bind(now.millis());
        if let Some(memo) = memo {
            query = query.bind(memo);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
