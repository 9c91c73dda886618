//! Order placement on SQLite, the hot path (DESIGN §3). SQLite has one writer, so the
//! batch's `BEGIN IMMEDIATE` is the lock: nothing read here can change before it commits.

use super::orders::load_order;
use super::{json_ids, map_err, move_stock, write_event, SqliteStore, Tx};
use crate::domain::allocation::{
    allocate, BatchState, Decision, ExistingOrder, OrderRequest, PlannedOrder, ProductState,
};
use crate::domain::order::MovementKind;
use crate::domain::{events, OrderStatus, Timestamp, Won};
use crate::store::{
    BatchResult, OrderItemRecord, OrderRecord, PartnerOrderRecord, PlaceOutcome, StoreError,
    StoreResult,
};
use sqlx::Row;
use std::collections::BTreeSet;

/// Orders in these states count against a purchase limit (see `OrderStatus::counts_toward_limit`).
const LIMIT_STATUSES: &str = "('pending_payment', 'paid', 'confirmed')";

pub(super) async fn place_batch(
    store: &SqliteStore,
    batch: &[OrderRequest],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<BatchResult> {
    let mut tx = store.write_tx().await?;
    let state = load_batch_state(&mut tx, batch).await?;
    let allocation = allocate(batch, &state, now);
    let mut outcomes: Vec<Option<PlaceOutcome>> = vec![None; batch.len()];
    for (i, decision) in allocation.decisions.iter().enumerate() {
        match decision {
            Decision::Accept(plan) => {
                let order = insert_order(&mut tx, &batch[i], plan, pay_by, now).await?;
                outcomes[i] = Some(PlaceOutcome::Placed(order));
            }
            Decision::Reject(rejection) => {
                outcomes[i] = Some(PlaceOutcome::Rejected(rejection.clone()))
            }
            Decision::Replay { .. } | Decision::SameAs { .. } => {}
        }
    }
    for (product_id, _) in &allocation.holds {
        let (on_hand, held): (i64, i64) =
            sqlx::query_as("SELECT on_hand, held FROM stock WHERE product_id = $1")
                .bind(product_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        write_event(
            &mut tx,
            &events::stock_changed(*product_id, on_hand, held),
            now.millis(),
        )
        .await?;
    }
    // Replays answer with the stored order as it is now.
    for (i, decision) in allocation.decisions.iter().enumerate() {
        outcomes[i] = match decision {
            Decision::Replay { order_id } => load_order(&mut tx, *order_id)
                .await?
                .map(PlaceOutcome::Replayed),
            Decision::SameAs { index } => match &outcomes[*index] {
                Some(PlaceOutcome::Placed(order)) | Some(PlaceOutcome::Replayed(order)) => {
                    Some(PlaceOutcome::Replayed(order.clone()))
                }
                other => other.clone(),
            },
            _ => outcomes[i].take(),
        };
    }
    tx.commit().await.map_err(map_err)?;
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("replayed order vanished".into())))
        .collect::<StoreResult<Vec<_>>>()?;
    let mut available_after: Vec<(i64, i64)> = allocation.available_after.into_iter().collect();
    available_after.sort_unstable();
    Ok(BatchResult {
        outcomes,
        available_after,
    })
}

/// Reads what allocation needs. The caller holds SQLite's write lock, so nothing read here
/// can change before the batch commits.
async fn load_batch_state(tx: &mut Tx, batch: &[OrderRequest]) -> StoreResult<BatchState> {
    let product_ids: BTreeSet<i64> = batch
        .iter()
        .flat_map(|r| r.lines.iter().map(|l| l.product_id))
        .collect();
    let rows = sqlx::query(
        "SELECT p.id, p.partner_id, p.price, p.release_at, p.max_per_user, s.on_hand, s.held
         FROM products p JOIN stock s ON s.product_id = p.id
         WHERE p.id IN (SELECT value FROM json_each($1))",
    )
    .bind(json_ids(product_ids.iter().copied()))
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    let mut state = BatchState::default();
    for row in rows {
        let on_hand: i64 = row.try_get("on_hand")?;
        let held: i64 = row.try_get("held")?;
        let price = Won::new("price", row.try_get("price")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        state.products.insert(
            row.try_get("id")?,
            ProductState {
                partner_id: row.try_get("partner_id")?,
                price,
                release_at: Timestamp::from_millis(row.try_get("release_at")?),
                max_per_user: row.try_get("max_per_user")?,
                available: on_hand - held,
            },
        );
    }
    for request in batch {
        let existing: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, request_hash FROM orders WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(request.user_id)
        .bind(&request.idempotency_key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
        if let Some((order_id, request_hash)) = existing {
            state.existing.insert(
                (request.user_id, request.idempotency_key.clone()),
                ExistingOrder {
                    order_id,
                    request_hash,
                },
            );
        }
        for line in &request.lines {
            let limited = state
                .products
                .get(&line.product_id)
                .is_some_and(|p| p.max_per_user.is_some());
            let key = (request.user_id, line.product_id);
            if limited && !state.purchased.contains_key(&key) {
                let units: i64 = sqlx::query_scalar(&format!(
                    "SELECT COALESCE(SUM(oi.quantity), 0) FROM order_items oi
                     JOIN orders o ON o.id = oi.order_id
                     WHERE oi.product_id = $1 AND oi.user_id = $2 AND o.status IN {LIMIT_STATUSES}"
                ))
                .bind(line.product_id)
                .bind(request.user_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(map_err)?;
                state.purchased.insert(key, units);
            }
        }
    }
    Ok(state)
}

/// Writes one accepted order: the order, its partner orders and items, a hold movement per
/// line and its `order.placed` event.
async fn insert_order(
    tx: &mut Tx,
    request: &OrderRequest,
    plan: &PlannedOrder,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<OrderRecord> {
    let total = plan.total.get();
    let order_id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (user_id, idempotency_key, request_hash, status, total, discount,
             points_used, payable, pay_by, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending_payment', $4, 0, 0, $4, $5, $6, $6) RETURNING id",
    )
    .bind(request.user_id)
    .bind(&request.idempotency_key)
    .bind(&request.request_hash)
    .bind(total)
    .bind(pay_by.millis())
    .bind(now.millis())
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)?;
    let mut partner_orders = Vec::with_capacity(plan.partner_orders.len());
    for planned in &plan.partner_orders {
        let partner_order_id: i64 = sqlx::query_scalar(
            "INSERT INTO partner_orders (order_id, partner_id, status, subtotal)
             VALUES ($1, $2, 'pending_payment', $3) RETURNING id",
        )
        .bind(order_id)
        .bind(planned.partner_id)
        .bind(planned.subtotal.get())
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
        let mut items = Vec::with_capacity(planned.lines.len());
        for line in &planned.lines {
            sqlx::query(
                "INSERT INTO order_items (order_id, partner_order_id, user_id, product_id,
                     quantity, unit_price, line_total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(order_id)
            .bind(partner_order_id)
            .bind(request.user_id)
            .bind(line.product_id)
            .bind(line.quantity.get())
            .bind(line.unit_price.get())
            .bind(line.line_total.get())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
            move_stock(
                tx,
                line.product_id,
                MovementKind::Hold,
                line.quantity.get(),
                Some(order_id),
                None,
                now.millis(),
            )
            .await?;
            items.push(OrderItemRecord {
                product_id: line.product_id,
                quantity: line.quantity.get(),
                unit_price: line.unit_price.get(),
                line_total: line.line_total.get(),
            });
        }
        partner_orders.push(PartnerOrderRecord {
            id: partner_order_id,
            partner_id: planned.partner_id,
            status: OrderStatus::PendingPayment.as_str().to_owned(),
            subtotal: planned.subtotal.get(),
            items,
        });
    }
    write_event(
        tx,
        &events::order_placed(order_id, request.user_id, now),
        now.millis(),
    )
    .await?;
    Ok(OrderRecord {
        id: order_id,
        user_id: request.user_id,
        status: OrderStatus::PendingPayment,
        total,
        discount: 0,
        points_used: 0,
        payable: total,
        pay_by,
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        partner_orders,
    })
}
