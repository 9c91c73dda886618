//! What `stampede verify` compares, recomputed from the rows: the same numbers as the
//! SQLite audit, read from one snapshot.

use super::conn::{snapshot, PgStore};
use crate::domain::order::MovementKind;
use crate::store::audit::{shares_by_order, OrderSharesRow};
use crate::store::rows::{movement_kind, order_status};
use crate::store::{
    benefits_audit, sql, Audit, AuditStore, BenefitsAudit, LimitBreach, OrderAudit, StockAudit,
    StoreResult,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

#[async_trait]
impl AuditStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn audit(&self) -> StoreResult<Audit> {
        audit(&self.pool).await
    }

    #[tracing::instrument(skip_all)]
    async fn benefits_audit(&self) -> StoreResult<BenefitsAudit> {
        benefits(&self.pool).await
    }
}

async fn benefits(pool: &PgPool) -> StoreResult<BenefitsAudit> {
    let mut tx = snapshot(pool).await?;
    let orders: Vec<benefits_audit::OrderRow> = sqlx::query_as(benefits_audit::ORDERS)
        .fetch_all(&mut *tx)
        .await?;
    let strays: Vec<benefits_audit::StrayRow> = sqlx::query_as(benefits_audit::STRAY_COUPONS)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    benefits_audit::assemble(orders, strays)
}

/// REPEATABLE READ gives every statement below the same snapshot, so balances, ledgers and
/// orders agree with each other even while batches commit.
async fn audit(pool: &PgPool) -> StoreResult<Audit> {
    let mut tx = snapshot(pool).await?;
    let stock = stock_audit(&mut tx).await?;
    let orders = order_audit(&mut tx).await?;
    let limit_breaches = limit_breaches(&mut tx).await?;
    tx.commit().await?;
    Ok(Audit {
        stock,
        orders,
        limit_breaches,
    })
}

/// Per product: the account, the ledger summed per kind, and units in pending orders.
async fn stock_audit(conn: &mut PgConnection) -> StoreResult<Vec<StockAudit>> {
    let accounts = sqlx::query("SELECT product_id, on_hand, held FROM stock")
        .fetch_all(&mut *conn)
        .await?;
    let mut stock: BTreeMap<i64, StockAudit> = BTreeMap::new();
    for row in &accounts {
        let product_id: i64 = row.try_get("product_id")?;
        let audit = StockAudit {
            product_id,
            on_hand: row.try_get("on_hand")?,
            held: row.try_get("held")?,
            ..Default::default()
        };
        stock.insert(product_id, audit);
    }
    let blank = |product_id| StockAudit {
        product_id,
        ..Default::default()
    };
    let ledger = sqlx::query(
        "SELECT product_id, kind, SUM(quantity)::BIGINT AS total FROM stock_movements \
         GROUP BY product_id, kind ORDER BY product_id, kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &ledger {
        let product_id: i64 = row.try_get("product_id")?;
        let entry = (movement_kind(row.try_get("kind")?)?, row.try_get("total")?);
        stock
            .entry(product_id)
            .or_insert_with(|| blank(product_id))
            .ledger
            .push(entry);
    }
    let open = sqlx::query(
        "SELECT oi.product_id, SUM(oi.quantity)::BIGINT AS units \
         FROM order_items oi JOIN orders o ON o.id = oi.order_id \
         WHERE o.status = 'pending_payment' GROUP BY oi.product_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &open {
        let product_id: i64 = row.try_get("product_id")?;
        stock
            .entry(product_id)
            .or_insert_with(|| blank(product_id))
            .open_order_units = row.try_get("units")?;
    }
    Ok(stock.into_values().collect())
}

/// Per order: its money, what its items and partner orders add up to, and its movements.
/// Aggregates are joined once rather than run as a subquery per order.
async fn order_audit(conn: &mut PgConnection) -> StoreResult<Vec<OrderAudit>> {
    let share_rows: Vec<OrderSharesRow> = sqlx::query_as(sql::ORDER_SHARES_AUDIT)
        .fetch_all(&mut *conn)
        .await?;
    let mut shares = shares_by_order(share_rows);
    let moves = sqlx::query(
        "SELECT order_id, kind, SUM(quantity)::BIGINT AS total FROM stock_movements \
         WHERE order_id IS NOT NULL GROUP BY order_id, kind ORDER BY order_id, kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut movements: HashMap<i64, Vec<(MovementKind, i64)>> = HashMap::new();
    for row in &moves {
        let entry = (movement_kind(row.try_get("kind")?)?, row.try_get("total")?);
        movements
            .entry(row.try_get("order_id")?)
            .or_default()
            .push(entry);
    }
    let rows = sqlx::query(
        "SELECT o.id, o.status, o.total, o.discount, o.points_used, o.payable, \
                COALESCE(i.items_total, 0) AS items_total, \
                COALESCE(p.partner_subtotals, 0) AS partner_subtotals, \
                COALESCE(i.item_units, 0) AS item_units \
         FROM orders o \
         LEFT JOIN (SELECT order_id, SUM(line_total)::BIGINT AS items_total, \
                           SUM(quantity)::BIGINT AS item_units \
                    FROM order_items GROUP BY order_id) i ON i.order_id = o.id \
         LEFT JOIN (SELECT order_id, SUM(subtotal)::BIGINT AS partner_subtotals \
                    FROM partner_orders GROUP BY order_id) p ON p.order_id = o.id \
         ORDER BY o.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let order_id: i64 = row.try_get("id")?;
            Ok(OrderAudit {
                order_id,
                status: order_status(row.try_get("status")?)?,
                total: row.try_get("total")?,
                discount: row.try_get("discount")?,
                points_used: row.try_get("points_used")?,
                payable: row.try_get("payable")?,
                items_total: row.try_get("items_total")?,
                partner_subtotals: row.try_get("partner_subtotals")?,
                item_units: row.try_get("item_units")?,
                movements: movements.remove(&order_id).unwrap_or_default(),
                shares: shares.remove(&order_id).unwrap_or_default(),
            })
        })
        .collect()
}

/// Buyers above a product's purchase limit, counting what placement counts: orders that
/// count toward it, less partner orders taken back on their own.
async fn limit_breaches(conn: &mut PgConnection) -> StoreResult<Vec<LimitBreach>> {
    let rows = sqlx::query(
        "SELECT oi.user_id, oi.product_id, SUM(oi.quantity)::BIGINT AS units, p.max_per_user \
         FROM order_items oi JOIN orders o ON o.id = oi.order_id \
         JOIN partner_orders po ON po.id = oi.partner_order_id \
         JOIN products p ON p.id = oi.product_id \
         WHERE p.max_per_user IS NOT NULL \
           AND o.status IN ('pending_payment', 'paid', 'confirmed') \
           AND po.status NOT IN ('cancelled', 'refunded') \
         GROUP BY oi.user_id, oi.product_id, p.max_per_user \
         HAVING SUM(oi.quantity) > p.max_per_user \
         ORDER BY oi.user_id, oi.product_id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LimitBreach {
                user_id: row.try_get("user_id")?,
                product_id: row.try_get("product_id")?,
                units: row.try_get("units")?,
                max_per_user: row.try_get("max_per_user")?,
            })
        })
        .collect()
}
