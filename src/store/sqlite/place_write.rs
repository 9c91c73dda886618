//! Writing a placement batch's accepted orders on SQLite: ids assigned by the batch, one
//! statement per table (`INSERT … SELECT … FROM json_each($1)`), then the stock holds and,
//! order by order, the coupons and points the orders hold.

use super::benefits;
use super::conn::{to_json, WriteTx};
use super::outbox;
use crate::domain::allocation::{Allocation, Decision, OrderRequest, PlannedOrder};
use crate::domain::events::{self, NewEvent};
use crate::domain::{OrderStatus, Timestamp};
use crate::store::{OrderItemRecord, OrderRecord, PartnerOrderRecord, StoreResult};
use std::collections::{BTreeMap, HashMap};

/// `(on_hand, held)` of each stock account as the batch moves it.
pub(super) type Levels = BTreeMap<i64, (i64, i64)>;

/// Writes the accepted orders of the batch; returns them by request index, and the id of
/// the last event written.
pub(super) async fn write_accepted(
    tx: &mut WriteTx,
    batch: &[OrderRequest],
    allocation: &Allocation,
    mut levels: Levels,
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<(HashMap<usize, OrderRecord>, Option<i64>)> {
    let mut placed = HashMap::new();
    if allocation.holds.is_empty() {
        return Ok((placed, None));
    }
    let mut ids = NextIds::read(tx).await?;
    let mut rows = BatchRows::default();
    for (i, decision) in allocation.decisions.iter().enumerate() {
        if let Decision::Accept(plan) = decision {
            let order = rows.add_order(&mut ids, &batch[i], plan, &mut levels, pay_by, now);
            placed.insert(i, order);
        }
    }
    for (product_id, _) in &allocation.holds {
        let (on_hand, held) = levels.get(product_id).copied().unwrap_or_default();
        rows.event(&mut ids, events::stock_changed(*product_id, on_hand, held));
    }
    insert_rows(tx, &rows, &allocation.holds, pay_by, now).await?;
    let mut holders: Vec<&OrderRecord> = placed
        .values()
        .filter(|o| o.coupon_id.is_some() || o.points_used > 0)
        .collect();
    holders.sort_unstable_by_key(|o| o.id);
    let held = benefits::hold_all(tx, &holders, now).await?;
    // The batch's own events took the ids before `ids.event`; the holds' come after them.
    let last_held = outbox::append(tx, &held, now).await?;
    let last_own = (!rows.events.is_empty()).then_some(ids.event - 1);
    Ok((placed, last_held.or(last_own)))
}

/// The next free id of each table the batch writes. Safe to hand out in advance: the batch
/// holds SQLite's only write lock from its first read to its commit.
struct NextIds {
    order: i64,
    partner_order: i64,
    item: i64,
    movement: i64,
    event: i64,
}

impl NextIds {
    async fn read(tx: &mut WriteTx) -> StoreResult<NextIds> {
        let (order, partner_order, item, movement, event): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM orders),
                        (SELECT COALESCE(MAX(id), 0) FROM partner_orders),
                        (SELECT COALESCE(MAX(id), 0) FROM order_items),
                        (SELECT COALESCE(MAX(id), 0) FROM stock_movements),
                        (SELECT COALESCE(MAX(id), 0) FROM outbox)",
            )
            .fetch_one(&mut **tx)
            .await?;
        Ok(NextIds {
            order: order + 1,
            partner_order: partner_order + 1,
            item: item + 1,
            movement: movement + 1,
            event: event + 1,
        })
    }
}

fn take(next: &mut i64) -> i64 {
    let id = *next;
    *next += 1;
    id
}

/// id, user_id, idempotency_key, request_hash, total, coupon_id, discount, points_used,
/// payable
type OrderRow<'a> = (i64, i64, &'a str, &'a str, i64, Option<i64>, i64, i64, i64);

/// Everything one batch writes, row by row, as JSON-serialisable tuples.
#[derive(Default)]
struct BatchRows<'a> {
    orders: Vec<OrderRow<'a>>,
    /// id, order_id, partner_id, subtotal, discount, points_used, payable
    partner_orders: Vec<[i64; 7]>,
    /// id, order_id, partner_order_id, user_id, product_id, quantity, unit_price, line_total
    items: Vec<[i64; 8]>,
    /// id, product_id, quantity, order_id, on_hand_after, held_after
    holds: Vec<[i64; 6]>,
    /// id, aggregate_type, aggregate_id, event_type, payload
    events: Vec<(i64, &'static str, i64, &'static str, String)>,
}

impl<'a> BatchRows<'a> {
    fn event(&mut self, ids: &mut NextIds, event: NewEvent) {
        let id = take(&mut ids.event);
        let NewEvent {
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
        } = event;
        self.events
            .push((id, aggregate_type, aggregate_id, event_type, payload));
    }

    /// Adds one accepted order's rows and returns the order as the client will see it.
    fn add_order(
        &mut self,
        ids: &mut NextIds,
        request: &'a OrderRequest,
        plan: &PlannedOrder,
        levels: &mut Levels,
        pay_by: Timestamp,
        now: Timestamp,
    ) -> OrderRecord {
        let order_id = take(&mut ids.order);
        let user_id = request.user_id;
        let (total, discount) = (plan.total.get(), plan.discount.get());
        let (points_used, payable) = (plan.points.get(), plan.payable.get());
        self.orders.push((
            order_id,
            user_id,
            request.idempotency_key.as_str(),
            request.request_hash.as_str(),
            total,
            plan.coupon_id,
            discount,
            points_used,
            payable,
        ));
        let partner_orders = plan
            .partner_orders
            .iter()
            .map(|planned| self.add_partner_order(ids, (order_id, user_id), planned, levels))
            .collect();
        self.event(ids, events::order_placed(order_id, user_id, now));
        OrderRecord {
            id: order_id,
            user_id,
            status: OrderStatus::PendingPayment,
            total,
            coupon_id: plan.coupon_id,
            discount,
            points_used,
            payable,
            pay_by,
            paid_at: None,
            delivered_at: None,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
            partner_orders,
        }
    }

    /// Adds one partner order's row, its items and one hold movement per item, each
    /// carrying the account's running balance.
    fn add_partner_order(
        &mut self,
        ids: &mut NextIds,
        (order_id, user_id): (i64, i64),
        planned: &crate::domain::allocation::PlannedPartnerOrder,
        levels: &mut Levels,
    ) -> PartnerOrderRecord {
        let partner_order_id = take(&mut ids.partner_order);
        let subtotal = planned.subtotal.get();
        let share = planned.share;
        self.partner_orders.push([
            partner_order_id,
            order_id,
            planned.partner_id,
            subtotal,
            share.discount.get(),
            share.points.get(),
            share.payable.get(),
        ]);
        let mut items = Vec::with_capacity(planned.lines.len());
        for line in &planned.lines {
            let item = OrderItemRecord {
                product_id: line.product_id,
                quantity: line.quantity.get(),
                unit_price: line.unit_price.get(),
                line_total: line.line_total.get(),
            };
            self.items.push([
                take(&mut ids.item),
                order_id,
                partner_order_id,
                user_id,
                item.product_id,
                item.quantity,
                item.unit_price,
                item.line_total,
            ]);
            let level = levels.entry(item.product_id).or_default();
            level.1 += item.quantity;
            let movement_id = take(&mut ids.movement);
            let (product_id, quantity) = (item.product_id, item.quantity);
            self.holds.push([
                movement_id,
                product_id,
                quantity,
                order_id,
                level.0,
                level.1,
            ]);
            items.push(item);
        }
        PartnerOrderRecord::placed(
            partner_order_id,
            order_id,
            planned.partner_id,
            (subtotal, share),
            items,
        )
    }
}

/// The batch's rows, one statement per table (parents before children: foreign keys are
/// enforced), then the stock the batch holds. The statements go to SQLite's worker thread
/// as one execution: one hand-off for the lot, not one per statement, because each
/// hand-off waits for a core on a busy machine.
const INSERT_BATCH: &str = "
    INSERT INTO orders (id, user_id, idempotency_key, request_hash, status, total,
        coupon_id, discount, points_used, payable, pay_by, created_at, updated_at)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'pending_payment',
        value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, $8, $7, $7
    FROM json_each($1);
    INSERT INTO partner_orders (id, order_id, partner_id, status, subtotal, discount,
        points_used, payable, commission_rate_bps)
    SELECT value ->> 0, value ->> 1, value ->> 2, 'pending_payment', value ->> 3,
        value ->> 4, value ->> 5, value ->> 6,
        (SELECT commission_rate_bps FROM partners WHERE id = value ->> 2)
    FROM json_each($2);
    INSERT INTO order_items (id, order_id, partner_order_id, user_id, product_id,
        quantity, unit_price, line_total)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
        value ->> 5, value ->> 6, value ->> 7
    FROM json_each($3);
    INSERT INTO stock_movements (id, product_id, kind, quantity, order_id, memo,
        on_hand_after, held_after, created_at)
    SELECT value ->> 0, value ->> 1, 'hold', value ->> 2, value ->> 3, NULL,
        value ->> 4, value ->> 5, $7
    FROM json_each($4);
    INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $7
    FROM json_each($5);
    UPDATE stock SET held = held + (SELECT h.value ->> 1 FROM json_each($6) h
                                    WHERE h.value ->> 0 = stock.product_id)
    WHERE product_id IN (SELECT value ->> 0 FROM json_each($6));";

/// Writes the batch's rows and holds its stock (`holds`: product id, units). Each part
/// keeps its partner's commission rate as it is now: settlement charges the rate at
/// placement, whatever the partner's rate becomes. The CHECK (held <= on_hand) on stock
/// is the last line of defence against overselling.
async fn insert_rows(
    tx: &mut WriteTx,
    rows: &BatchRows<'_>,
    holds: &[(i64, i64)],
    pay_by: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(INSERT_BATCH)
        .bind(to_json(&rows.orders))
        .bind(to_json(&rows.partner_orders))
        .bind(to_json(&rows.items))
        .bind(to_json(&rows.holds))
        .bind(to_json(&rows.events))
        .bind(to_json(holds))
        .bind(now.millis())
        .bind(pay_by.millis())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
