use super::SqliteStore;
use crate::domain::order::MovementKind;
use crate::domain::OrderStatus;
use crate::store::{
    benefits_audit, Audit, AuditStore, BenefitsAudit, LimitBreach, OrderAudit, StockAudit,
    StoreError, StoreResult,
};
use async_trait::async_trait;
use std::collections::HashMap;

fn kind(raw: &str) -> StoreResult<MovementKind> {
    MovementKind::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("movement kind {raw:?}")))
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn benefits_audit(&self) -> StoreResult<BenefitsAudit> {
        let mut tx = self.reader.begin().await?;
        let orders: Vec<benefits_audit::OrderRow> = sqlx::query_as(benefits_audit::ORDERS)
            .fetch_all(&mut *tx)
            .await?;
        let strays: Vec<benefits_audit::StrayRow> = sqlx::query_as(benefits_audit::STRAY_COUPONS)
            .fetch_all(&mut *tx)
            .await?;
        benefits_audit::assemble(orders, strays)
    }

    async fn audit(&self) -> StoreResult<Audit> {
        // One read transaction: every number below comes from the same snapshot.
        let mut tx = self.reader.begin().await?;
        let accounts: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT product_id, on_hand, held FROM stock ORDER BY product_id")
                .fetch_all(&mut *tx)
                .await?;
        let ledger: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT product_id, kind, SUM(quantity) FROM stock_movements GROUP BY product_id, kind",
        )
        .fetch_all(&mut *tx)
        .await?;
        let open: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT oi.product_id, SUM(oi.quantity) FROM order_items oi
             JOIN orders o ON o.id = oi.order_id
             WHERE o.status = 'pending_payment' GROUP BY oi.product_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut stock: HashMap<i64, StockAudit> = accounts
            .into_iter()
            .map(|(product_id, on_hand, held)| {
                (
                    product_id,
                    StockAudit {
                        product_id,
                        on_hand,
                        held,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (product_id, k, sum) in ledger {
            stock
                .entry(product_id)
                .or_insert_with(|| StockAudit {
                    product_id,
                    ..Default::default()
                })
                .ledger
                .push((kind(&k)?, sum));
        }
        for (product_id, units) in open {
            stock
                .entry(product_id)
                .or_insert_with(|| StockAudit {
                    product_id,
                    ..Default::default()
                })
                .open_order_units = units;
        }

        let orders: Vec<(i64, String, i64, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT o.id, o.status, o.total, o.discount, o.points_used, o.payable,
                 (SELECT COALESCE(SUM(line_total), 0) FROM order_items WHERE order_id = o.id),
                 (SELECT COALESCE(SUM(subtotal), 0) FROM partner_orders WHERE order_id = o.id),
                 (SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE order_id = o.id)
             FROM orders o ORDER BY o.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let order_moves: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT order_id, kind, SUM(quantity) FROM stock_movements
             WHERE order_id IS NOT NULL GROUP BY order_id, kind",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut moves: HashMap<i64, Vec<(MovementKind, i64)>> = HashMap::new();
        for (order_id, k, sum) in order_moves {
            moves.entry(order_id).or_default().push((kind(&k)?, sum));
        }
        let orders = orders
            .into_iter()
            .map(
                |(
                    order_id,
                    status,
                    total,
                    discount,
                    points_used,
                    payable,
                    items_total,
                    partner_subtotals,
                    item_units,
                )| {
                    Ok(OrderAudit {
                        order_id,
                        status: OrderStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt(format!("order status {status:?}"))
                        })?,
                        total,
                        discount,
                        points_used,
                        payable,
                        items_total,
                        partner_subtotals,
                        item_units,
                        movements: moves.remove(&order_id).unwrap_or_default(),
                    })
                },
            )
            .collect::<StoreResult<Vec<_>>>()?;

        let breaches: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT oi.user_id, oi.product_id, SUM(oi.quantity), p.max_per_user
             FROM order_items oi JOIN orders o ON o.id = oi.order_id
             JOIN products p ON p.id = oi.product_id
             WHERE p.max_per_user IS NOT NULL AND o.status IN ('pending_payment', 'paid', 'confirmed')
             GROUP BY oi.user_id, oi.product_id, p.max_per_user
             HAVING SUM(oi.quantity) > p.max_per_user",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut stock: Vec<StockAudit> = stock.into_values().collect();
        stock.sort_by_key(|s| s.product_id);
        Ok(Audit {
            stock,
            orders,
            limit_breaches: breaches
                .into_iter()
                .map(|(user_id, product_id, units, max_per_user)| LimitBreach {
                    user_id,
                    product_id,
                    units,
                    max_per_user,
                })
                .collect(),
        })
    }
}
