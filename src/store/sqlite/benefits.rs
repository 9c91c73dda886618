//! The coupon and points an order holds (DESIGN §1), on SQLite: read and held by placement
//! in the batch's transaction, then used and spent, or given back, in the transaction of
//! each order transition. Every write is conditional on the state it expects; allocation
//! has already decided under the same lock, so a write that finds anything else is
//! corruption.

use super::conn::{json_ids, to_json};
use super::points::{hold_all_in, step_hold_in};
use crate::domain::allocation::CouponState;
use crate::domain::coupon::CouponStatus;
use crate::domain::events::{self, CouponMoved, NewEvent};
use crate::domain::Timestamp;
use crate::store::rows::coupon_from_row;
use crate::store::{sql, OrderRecord, StoreError, StoreResult};
use sqlx::SqliteConnection;
use std::collections::HashMap;

/// The user coupons `ids` as placement weighs them.
pub(super) async fn coupons(
    conn: &mut SqliteConnection,
    ids: &[i64],
) -> StoreResult<HashMap<i64, CouponState>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(concat!(
        sql::select_coupon!(),
        " WHERE u.id IN (SELECT value FROM json_each($1))"
    ))
    .bind(json_ids(ids.iter().copied()))
    .fetch_all(conn)
    .await?;
    let mut coupons = HashMap::with_capacity(rows.len());
    for row in &rows {
        let coupon = coupon_from_row(row)?;
        coupons.insert(coupon.id, coupon.placement_state()?);
    }
    Ok(coupons)
}

/// Points each of `users` can hold at `now`: the unheld remainders of lots not yet expired
/// (a lot past its expiry waits for the expiry job but is no longer spendable).
pub(super) async fn spendable_points(
    conn: &mut SqliteConnection,
    users: &[i64],
    now: Timestamp,
) -> StoreResult<HashMap<i64, i64>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT user_id, SUM(remaining - held) FROM point_lots
         WHERE user_id IN (SELECT value FROM json_each($1)) AND remaining > held
           AND (expires_at IS NULL OR expires_at > $2)
         GROUP BY user_id",
    )
    .bind(json_ids(users.iter().copied()))
    .bind(now.millis())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Holds the points and coupons of a batch's placed orders (ascending by id); returns
/// their events, each order's points before its coupon, in a handful of statements for the
/// whole batch.
pub(super) async fn hold_all(
    conn: &mut SqliteConnection,
    orders: &[&OrderRecord],
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let holds: Vec<(i64, i64, i64)> = orders
        .iter()
        .filter(|o| o.points_used > 0)
        .map(|o| (o.id, o.user_id, o.points_used))
        .collect();
    let mut points: HashMap<i64, NewEvent> =
        hold_all_in(conn, &holds, now).await?.into_iter().collect();
    let mut coupons = hold_coupons(conn, orders, now).await?;
    let mut outgoing = Vec::with_capacity(points.len() + coupons.len());
    for order in orders {
        outgoing.extend(points.remove(&order.id));
        outgoing.extend(coupons.remove(&order.id));
    }
    Ok(outgoing)
}

/// `issued → held` on the coupon of each order that names one, in one statement; the
/// `coupon.held` event of each, by order id. A coupon not free to hold is corruption:
/// allocation weighed it under the same lock.
async fn hold_coupons(
    conn: &mut SqliteConnection,
    orders: &[&OrderRecord],
    now: Timestamp,
) -> StoreResult<HashMap<i64, NewEvent>> {
    let holds: Vec<(i64, i64, i64)> = orders
        .iter()
        .filter_map(|o| o.coupon_id.map(|coupon_id| (coupon_id, o.user_id, o.id)))
        .collect();
    if holds.is_empty() {
        return Ok(HashMap::new());
    }
    let moved: Vec<(i64, i64, i64, i64)> = sqlx::query_as(sql::HOLD_COUPONS)
        .bind(to_json(&holds))
        .bind(now.millis())
        .fetch_all(conn)
        .await?;
    if moved.len() != holds.len() {
        return Err(StoreError::Corrupt(format!(
            "{} of {} coupons free to hold",
            moved.len(),
            holds.len()
        )));
    }
    Ok(moved
        .into_iter()
        .map(|(user_coupon_id, campaign_id, user_id, order_id)| {
            let moved = CouponMoved {
                user_coupon_id,
                campaign_id,
                user_id,
                order_id,
            };
            (order_id, events::coupon_moved(events::COUPON_HELD, &moved))
        })
        .collect())
}

/// Moves the points and coupon of `order`, which just entered its status, along with it
/// (`OrderStatus::benefit_step`); returns their events. Points before the coupon: the
/// order in which placement locks them.
pub(super) async fn settle(
    conn: &mut SqliteConnection,
    order: &OrderRecord,
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let Some(step) = order.status.benefit_step() else {
        return Ok(Vec::new());
    };
    let mut outgoing = Vec::new();
    if order.points_used > 0 {
        let event = step_hold_in(conn, order.id, step.points, now)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("points of order {} moved", order.id)))?;
        outgoing.push(event);
    }
    if let Some(coupon_id) = order.coupon_id {
        let moved = move_coupon(
            conn,
            sql::STEP_ORDER_COUPON,
            (coupon_id, order.id),
            step.coupon,
            order.id,
            now,
        )
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("coupon {coupon_id} of order {} moved", order.id))
        })?;
        outgoing.push(events::coupon_moved(step.coupon_event, &moved));
    }
    Ok(outgoing)
}

/// `from → to` on the user coupon `id` with `statement` (`sql::HOLD_COUPON` or
/// `sql::STEP_ORDER_COUPON`); the coupon names `order_id` while held or used and nothing
/// once issued again.
async fn move_coupon(
    conn: &mut SqliteConnection,
    statement: &'static str,
    (id, owner_or_order): (i64, i64),
    (from, to): (CouponStatus, CouponStatus),
    order_id: i64,
    now: Timestamp,
) -> StoreResult<Option<CouponMoved>> {
    let linked = (to != CouponStatus::Issued).then_some(order_id);
    let moved: Option<(i64, i64)> = sqlx::query_as(statement)
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(linked)
        .bind(owner_or_order)
        .bind(now.millis())
        .fetch_optional(conn)
        .await?;
    Ok(moved.map(|(campaign_id, user_id)| CouponMoved {
        user_coupon_id: id,
        campaign_id,
        user_id,
        order_id,
    }))
}
