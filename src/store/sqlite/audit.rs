//! What `stampede verify` compares, recomputed from the rows on SQLite, each audit in one
//! read transaction so every number comes from the same snapshot.

use super::conn::{snapshot, SqliteStore};
use crate::domain::order::MovementKind;
use crate::store::audit::{shares_by_order, OrderSharesRow};
use crate::store::rows::{movement_kind, order_status};
use crate::store::{
    benefits_audit, sql, Audit, AuditStore, BenefitsAudit, LimitBreach, OrderAudit, StockAudit,
    StoreResult,
};
use async_trait::async_trait;
use sqlx::SqliteConnection;
use std::collections::{BTreeMap, HashMap};

#[async_trait]
impl AuditStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn audit(&self) -> StoreResult<Audit> {
        let mut tx = snapshot(&self.reader).await?;
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

    #[tracing::instrument(skip_all)]
    async fn benefits_audit(&self) -> StoreResult<BenefitsAudit> {
        let mut tx = snapshot(&self.reader).await?;
        let orders: Vec<benefits_audit::OrderRow> = sqlx::query_as(benefits_audit::ORDERS)
            .fetch_all(&mut *tx)
            .await?;
        let strays: Vec<benefits_audit::StrayRow> = sqlx::query_as(benefits_audit::STRAY_COUPONS)
            .fetch_all(&mut *tx)
            .await?;
        benefits_audit::assemble(orders, strays)
    }
}

/// Per product, ascending: the account, the ledger summed per kind, and units in pending
/// orders.
async fn stock_audit(conn: &mut SqliteConnection) -> StoreResult<Vec<StockAudit>> {
    let accounts: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT product_id, on_hand, held FROM stock ORDER BY product_id")
            .fetch_all(&mut *conn)
            .await?;
    let ledger: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT product_id, kind, SUM(quantity) FROM stock_movements GROUP BY product_id, kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    let open: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT oi.product_id, SUM(oi.quantity) FROM order_items oi
         JOIN orders o ON o.id = oi.order_id
         WHERE o.status = 'pending_payment' GROUP BY oi.product_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let blank = |product_id| StockAudit {
        product_id,
        ..Default::default()
    };
    let mut stock: BTreeMap<i64, StockAudit> = accounts
        .into_iter()
        .map(|(product_id, on_hand, held)| {
            let audit = StockAudit {
                on_hand,
                held,
                ..blank(product_id)
            };
            (product_id, audit)
        })
        .collect();
    for (product_id, kind, sum) in ledger {
        let entry = stock.entry(product_id).or_insert_with(|| blank(product_id));
        entry.ledger.push((movement_kind(&kind)?, sum));
    }
    for (product_id, units) in open {
        stock
            .entry(product_id)
            .or_insert_with(|| blank(product_id))
            .open_order_units = units;
    }
    Ok(stock.into_values().collect())
}

/// id, status, total, discount, points_used, payable, Σ line_total, Σ partner subtotal,
/// Σ quantity.
type OrderAuditRow = (i64, String, i64, i64, i64, i64, i64, i64, i64);

/// Per order, ascending: its money, what its items and partner orders add up to, and its
/// movements.
async fn order_audit(conn: &mut SqliteConnection) -> StoreResult<Vec<OrderAudit>> {
    let share_rows: Vec<OrderSharesRow> = sqlx::query_as(sql::ORDER_SHARES_AUDIT)
        .fetch_all(&mut *conn)
        .await?;
    let mut shares = shares_by_order(share_rows);
    let orders: Vec<OrderAuditRow> = sqlx::query_as(
        "SELECT o.id, o.status, o.total, o.discount, o.points_used, o.payable,
             (SELECT COALESCE(SUM(line_total), 0) FROM order_items WHERE order_id = o.id),
             (SELECT COALESCE(SUM(subtotal), 0) FROM partner_orders WHERE order_id = o.id),
             (SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE order_id = o.id)
         FROM orders o ORDER BY o.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let order_moves: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT order_id, kind, SUM(quantity) FROM stock_movements
         WHERE order_id IS NOT NULL GROUP BY order_id, kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut moves: HashMap<i64, Vec<(MovementKind, i64)>> = HashMap::new();
    for (order_id, kind, sum) in order_moves {
        moves
            .entry(order_id)
            .or_default()
            .push((movement_kind(&kind)?, sum));
    }
    orders
        .into_iter()
        .map(|row| {
            let (order_id, status, total, discount, points_used, payable) =
                (row.0, row.1, row.2, row.3, row.4, row.5);
            Ok(OrderAudit {
                order_id,
                status: order_status(&status)?,
                total,
                discount,
                points_used,
                payable,
                items_total: row.6,
                partner_subtotals: row.7,
                item_units: row.8,
                movements: moves.remove(&order_id).unwrap_or_default(),
                shares: shares.remove(&order_id).unwrap_or_default(),
            })
        })
        .collect()
}

/// Buyers above a product's purchase limit, counting what placement counts: orders that
/// count toward it, less partner orders taken back on their own.
async fn limit_breaches(conn: &mut SqliteConnection) -> StoreResult<Vec<LimitBreach>> {
    let breaches: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT oi.user_id, oi.product_id, SUM(oi.quantity), p.max_per_user
         FROM order_items oi JOIN orders o ON o.id = oi.order_id
         JOIN partner_orders po ON po.id = oi.partner_order_id
         JOIN products p ON p.id = oi.product_id
         WHERE p.max_per_user IS NOT NULL AND o.status IN ('pending_payment', 'paid', 'confirmed')
           AND po.status NOT IN ('cancelled', 'refunded')
         GROUP BY oi.user_id, oi.product_id, p.max_per_user
         HAVING SUM(oi.quantity) > p.max_per_user",
    )
    .fetch_all(conn)
    .await?;
    Ok(breaches
        .into_iter()
        .map(|(user_id, product_id, units, max_per_user)| LimitBreach {
            user_id,
            product_id,
            units,
            max_per_user,
        })
        .collect())
}
