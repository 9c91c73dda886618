//! Coupons and points on orders: `POST /orders` takes `coupon_id` and `points`, holds both
//! in the transaction that holds the stock, payment uses them, cancel and an expired
//! payment deadline give them back, a refund returns them. Holds take the lots that expire
//! first and never points of an expired lot; concurrent orders never take more points than
//! the buyer has nor one coupon twice; a refused order changes nothing.

use crate::helpers::*;
use crate::points::{adjust, grant_lot, history, in_days, levels, metric, points_events};
use serde_json::{json, Value};
use stampede::store::{NewPointsOperation, PointsOperationKind, PointsOperationOutcome};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
/// 10^12 won: the largest amount of money the API accepts.
const MAX_WON: i64 = 1_000_000_000_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn fixed(value: i64) -> Value {
    json!({
        "name": unique("campaign"),
        "discount_type": "fixed",
        "discount_value": value,
        "total_quantity": 100,
    })
}

fn percent(value: i64, max_discount: Option<i64>) -> Value {
    let mut body = json!({
        "name": unique("campaign"),
        "discount_type": "percent",
        "discount_value": value,
        "total_quantity": 100,
    });
    if let Some(max) = max_discount {
        body["max_discount"] = json!(max);
    }
    body
}

fn with_min_order(mut campaign: Value, min_order_amount: i64) -> Value {
    campaign["min_order_amount"] = json!(min_order_amount);
    campaign
}

/// Creates the campaign (as the admin); returns its id.
async fn campaign(app: &TestApp, body: &Value) -> i64 {
    let admin = app.admin_token().await;
    int(
        expect(&app.post("/coupons", Some(&admin), body).await, 201),
        "id",
    )
}

/// The buyer claims a coupon of the campaign; returns the user coupon's id.
async fn claim(app: &TestApp, campaign_id: i64, buyer: &str) -> i64 {
    let reply = app
        .post_empty(&format!("/coupons/{campaign_id}/issue"), Some(buyer))
        .await;
    let coupon = expect(&reply, 201);
    assert_eq!(coupon["status"], "issued", "{coupon}");
    int(coupon, "id")
}

/// A new campaign of `body` and the buyer's coupon of it; returns the user coupon's id.
pub(crate) async fn coupon(app: &TestApp, buyer: &str, body: &Value) -> i64 {
    let id = campaign(app, body).await;
    claim(app, id, buyer).await
}

/// The buyer's coupon as `GET /me/coupons` shows it.
async fn my_coupon(app: &TestApp, buyer: &str, coupon_id: i64) -> Value {
    let reply = app.get("/me/coupons?page=1&size=100", Some(buyer)).await;
    let body = expect(&reply, 200);
    array(body, "items")
        .iter()
        .find(|c| int(c, "id") == coupon_id)
        .unwrap_or_else(|| panic!("coupon {coupon_id} is not among the buyer's: {body}"))
        .clone()
}

/// Insists on the coupon's status, and on the order it belongs to when `order` is given.
async fn assert_coupon(
    app: &TestApp,
    buyer: &str,
    coupon_id: i64,
    status: &str,
    order: Option<i64>,
) {
    let coupon = my_coupon(app, buyer, coupon_id).await;
    assert_eq!(coupon["status"], status, "coupon {coupon_id}: {coupon}");
    if let Some(order_id) = order {
        assert_eq!(
            coupon["order_id"].as_i64(),
            Some(order_id),
            "coupon {coupon_id} should belong to order {order_id}: {coupon}"
        );
    }
}

fn order_body_with(items: &[(i64, i64)], coupon_id: Option<i64>, points: Option<i64>) -> Value {
    let mut body = order_body(items);
    if let Some(id) = coupon_id {
        body["coupon_id"] = json!(id);
    }
    if let Some(points) = points {
        body["points"] = json!(points);
    }
    body
}

/// `POST /orders` under a fresh Idempotency-Key.
async fn place(
    app: &TestApp,
    buyer: &str,
    items: &[(i64, i64)],
    coupon_id: Option<i64>,
    points: Option<i64>,
) -> Reply {
    let body = order_body_with(items, coupon_id, points);
    app.post_idem("/orders", Some(buyer), &unique("order"), &body)
        .await
}

/// Places the order and insists on 201; returns it.
async fn place_ok(
    app: &TestApp,
    buyer: &str,
    items: &[(i64, i64)],
    coupon_id: Option<i64>,
    points: Option<i64>,
) -> Value {
    expect(&place(app, buyer, items, coupon_id, points).await, 201).clone()
}

/// `(total, discount, points_used, payable)` of an order, checking that the payable
/// amount is what is left of the total.
#[track_caller]
fn amounts(order: &Value) -> (i64, i64, i64, i64) {
    let amounts = (
        int(order, "total"),
        int(order, "discount"),
        int(order, "points_used"),
        int(order, "payable"),
    );
    assert_eq!(
        amounts.3,
        amounts.0 - amounts.1 - amounts.2,
        "payable != total - discount - points_used: {order}"
    );
    amounts
}

/// `(kind, amount, lot_id, order_id)` of the newest `n` ledger rows, sorted (the rows of
/// one operation, one per lot, come in no promised order).
async fn newest_rows(app: &TestApp, buyer: &str, n: usize) -> Vec<(String, i64, i64, i64)> {
    let ledger = history(app, buyer).await;
    assert!(ledger.len() >= n, "fewer than {n} ledger rows: {ledger:?}");
    let mut rows: Vec<_> = ledger[..n]
        .iter()
        .map(|r| {
            (
                str_of(r, "kind").to_owned(),
                int(r, "amount"),
                int(r, "lot_id"),
                r["order_id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The ledger rows of `kind`.
async fn rows_of_kind(app: &TestApp, buyer: &str, kind: &str) -> Vec<Value> {
    history(app, buyer)
        .await
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

fn row(kind: &str, amount: i64, lot: i64, order: i64) -> (String, i64, i64, i64) {
    (kind.to_owned(), amount, lot, order)
}

fn sorted<T: Ord>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort();
    rows
}

/// Every event of the store, oldest first.
async fn all_events(app: &TestApp) -> Vec<stampede::domain::events::Event> {
    app.state
        .store
        .events_after(0, 100_000)
        .await
        .expect("read the outbox")
}

/// Types of the `coupon.*` events that orders cause (held, used, returned), oldest first.
async fn coupon_events(app: &TestApp) -> Vec<String> {
    all_events(app)
        .await
        .into_iter()
        .filter(|e| {
            e.aggregate_type == "coupon"
                && ["coupon.held", "coupon.used", "coupon.returned"]
                    .contains(&e.event_type.as_str())
        })
        .map(|e| e.event_type)
        .collect()
}

/// The buyer's points events from the first order operation on (grants left out).
async fn order_points_events(app: &TestApp, buyer: &str) -> Vec<String> {
    let user_id = app.user_id(buyer).await;
    points_events(app, user_id)
        .await
        .into_iter()
        .filter(|e| e != "points.granted" && e != "points.adjusted")
        .collect()
}

/// Waits until the sweeper has cancelled the order for its passed payment deadline.
/// Moves the servers' clock past the order's payment deadline and waits for the sweeper.
async fn wait_until_expired(app: &TestApp, buyer: &str, order_id: i64) {
    app.clock
        .advance(Duration::from_secs(app.limits.hold_ttl_secs + 1));
    let order = eventually(WAIT, "the sweeper to expire the order", || async {
        let order = app.order(buyer, order_id).await;
        (order["status"] != "pending_payment").then_some(order)
    })
    .await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "expired", "{order}");
}

async fn pay_amount(app: &TestApp, buyer: &str, order_id: i64, amount: i64) -> Reply {
    let body = json!({"payment_key": unique("pk_ok"), "amount": amount});
    app.post(&format!("/orders/{order_id}/pay"), Some(buyer), &body)
        .await
}

// ---------------------------------------------------------------------------------------
// 1. Discounts
// ---------------------------------------------------------------------------------------

backend_tests!(coupons_discount_the_whole_order_total, |app| async move {
    let product = app.simple_product(9_999, 30).await;
    let buyer = app.buyer().await;
    // (campaign, quantity, discount)
    let cases = [
        // floor(9,999 × 15 / 100) = floor(1,499.85)
        (percent(15, None), 1, 1_499),
        (percent(15, Some(1_000)), 1, 1_000),
        // floor(19,998 × 10 / 100) = floor(1,999.8), under its cap
        (percent(10, Some(5_000)), 2, 1_999),
        (percent(100, None), 1, 9_999),
        (fixed(3_000), 1, 3_000),
        (fixed(3_000), 3, 3_000),
        // Never more than the total.
        (fixed(20_000), 1, 9_999),
        // The minimum order amount met exactly.
        (with_min_order(fixed(500), 9_999), 1, 500),
        (with_min_order(percent(50, Some(4_000)), 19_998), 2, 4_000),
    ];
    let mut units = 0;
    for (terms, quantity, discount) in &cases {
        let coupon_id = coupon(&app, &buyer, terms).await;
        let order = place_ok(&app, &buyer, &[(product, *quantity)], Some(coupon_id), None).await;
        let total = 9_999 * quantity;
        assert_eq!(
            amounts(&order),
            (total, *discount, 0, total - discount),
            "{terms}: {order}"
        );
        assert_eq!(order["coupon_id"].as_i64(), Some(coupon_id), "{order}");
        let order_id = int(&order, "id");
        let read = app.order(&buyer, order_id).await;
        assert_eq!(amounts(&read), amounts(&order), "{read}");
        assert_eq!(read["coupon_id"].as_i64(), Some(coupon_id), "{read}");
        assert_coupon(&app, &buyer, coupon_id, "held", Some(order_id)).await;
        units += quantity;
    }

    // Without a coupon: no discount, coupon_id null; points 0 is no points.
    let plain = place_ok(&app, &buyer, &[(product, 1)], None, None).await;
    assert_eq!(amounts(&plain), (9_999, 0, 0, 9_999));
    assert!(plain["coupon_id"].is_null(), "{plain}");
    let zero = place_ok(&app, &buyer, &[(product, 1)], None, Some(0)).await;
    assert_eq!(amounts(&zero), (9_999, 0, 0, 9_999));
    units += 2;

    // Points pay (1 point = 1 won) what the coupon leaves, up to all of it.
    grant_lot(&app, &buyer, 10_000, Some(in_days(30))).await;
    let coupon_id = coupon(&app, &buyer, &fixed(3_000)).await;
    let order = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(6_999)).await;
    assert_eq!(amounts(&order), (9_999, 3_000, 6_999, 0));
    let coupon_id = coupon(&app, &buyer, &percent(15, None)).await;
    let order = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(500)).await;
    assert_eq!(amounts(&order), (9_999, 1_499, 500, 8_000));
    let points_only = place_ok(&app, &buyer, &[(product, 2)], None, Some(1)).await;
    assert_eq!(amounts(&points_only), (19_998, 0, 1, 19_997));
    assert!(points_only["coupon_id"].is_null(), "{points_only}");
    units += 4;
    assert_eq!(levels(&app, &buyer).await, (10_000, 7_500, 2_500));
    assert_eq!(app.stock(product).await.held, units);
    assert_eq!(
        coupon_events(&app).await.len(),
        cases.len() + 2,
        "one coupon.held per order with a coupon"
    );
    app.assert_verify_clean().await;
});

// ---------------------------------------------------------------------------------------
// 2. Hold, then pay
// ---------------------------------------------------------------------------------------

backend_tests!(
    paying_uses_the_coupon_and_spends_the_points,
    |app| async move {
        let admin = app.admin_token().await;
        let buyer = app.buyer().await;
        let user_id = app.user_id(&buyer).await;
        let later = grant_lot(&app, &buyer, 100, Some(in_days(20))).await;
        let sooner = grant_lot(&app, &buyer, 100, Some(in_days(5))).await;
        let body = json!({"user_id": user_id, "amount": 100, "reason": "never expires"});
        expect(&adjust(&app, &admin, &unique("k"), &body).await, 201);
        let forever = int(&history(&app, &buyer).await[0], "lot_id");
        let product = app.simple_product(1_000, 5).await;
        let coupon_id = coupon(&app, &buyer, &fixed(300)).await;

        let order = place_ok(&app, &buyer, &[(product, 2)], Some(coupon_id), Some(150)).await;
        let order_id = int(&order, "id");
        assert_eq!(amounts(&order), (2_000, 300, 150, 1_550));
        assert_eq!(order["coupon_id"].as_i64(), Some(coupon_id));
        assert_eq!(order["status"], "pending_payment");

        // Held: the lot expiring in 5 days first, then the one in 20; never the forever lot.
        assert_coupon(&app, &buyer, coupon_id, "held", Some(order_id)).await;
        assert_eq!(levels(&app, &buyer).await, (300, 150, 150));
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("hold", 100, sooner, order_id),
                row("hold", 50, later, order_id)
            ])
        );
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 5,
                held: 2,
                available: 3
            }
        );
        assert_eq!(order_points_events(&app, &buyer).await, ["points.held"]);
        assert_eq!(coupon_events(&app).await, ["coupon.held"]);
        let expiring = expect(&app.get("/me/points", Some(&buyer)).await, 200).clone();
        let expiring: i64 = array(&expiring, "expiring")
            .iter()
            .map(|e| int(e, "amount"))
            .sum();
        assert_eq!(expiring, 50, "only unheld points are expiring");

        // The gross total, or the total less the discount only, is not what is owed.
        for wrong in [2_000, 1_700, 1_850, 1_549] {
            expect_error(
                &pay_amount(&app, &buyer, order_id, wrong).await,
                409,
                "payment_amount_mismatch",
            );
        }
        assert_eq!(
            app.order(&buyer, order_id).await["status"],
            "pending_payment"
        );
        assert_coupon(&app, &buyer, coupon_id, "held", Some(order_id)).await;
        assert_eq!(levels(&app, &buyer).await, (300, 150, 150));
        assert!(rows_of_kind(&app, &buyer, "spend").await.is_empty());

        // Paid: the coupon is used, the held points are spent from the same lots.
        let paid = pay_amount(&app, &buyer, order_id, 1_550).await;
        let paid = expect(&paid, 200);
        assert_eq!(paid["status"], "paid", "{paid}");
        assert_eq!(amounts(paid), (2_000, 300, 150, 1_550));
        assert_eq!(paid["coupon_id"].as_i64(), Some(coupon_id));
        assert_coupon(&app, &buyer, coupon_id, "used", Some(order_id)).await;
        assert_eq!(levels(&app, &buyer).await, (150, 0, 150));
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("spend", 100, sooner, order_id),
                row("spend", 50, later, order_id)
            ])
        );
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 3,
                held: 0,
                available: 3
            }
        );
        assert_eq!(
            order_points_events(&app, &buyer).await,
            ["points.held", "points.spent"]
        );
        assert_eq!(coupon_events(&app).await, ["coupon.held", "coupon.used"]);

        // Paying again changes nothing; a used coupon cannot be used again.
        expect_error(
            &pay_amount(&app, &buyer, order_id, 1_550).await,
            409,
            "order_not_payable",
        );
        expect_error(
            &place(&app, &buyer, &[(product, 1)], Some(coupon_id), None).await,
            409,
            "coupon_in_use",
        );
        assert_eq!(app.order_count(&buyer).await, 1);
        assert_coupon(&app, &buyer, coupon_id, "used", Some(order_id)).await;
        assert_eq!(levels(&app, &buyer).await, (150, 0, 150));
        assert_eq!(rows_of_kind(&app, &buyer, "spend").await.len(), 2);
        let never_held = history(&app, &buyer)
            .await
            .iter()
            .all(|r| r["lot_id"].as_i64() != Some(forever) || r["kind"] == "adjust");
        assert!(never_held, "the lot that never expires is used last");
        app.assert_verify_clean().await;
    }
);

// ---------------------------------------------------------------------------------------
// 3. Cancel and expiry give both back
// ---------------------------------------------------------------------------------------

backend_tests!(
    cancelling_releases_the_coupon_and_the_points,
    |app| async move {
        let buyer = app.buyer().await;
        let later = grant_lot(&app, &buyer, 100, Some(in_days(20))).await;
        let sooner = grant_lot(&app, &buyer, 100, Some(in_days(5))).await;
        let product = app.simple_product(1_000, 5).await;
        let coupon_id = coupon(&app, &buyer, &percent(10, None)).await;

        let first = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(120)).await;
        let first_id = int(&first, "id");
        assert_eq!(amounts(&first), (1_000, 100, 120, 780));
        assert_coupon(&app, &buyer, coupon_id, "held", Some(first_id)).await;
        assert_eq!(levels(&app, &buyer).await, (200, 120, 80));

        let cancelled = app.cancel(&buyer, first_id).await;
        assert_eq!(expect(&cancelled, 200)["status"], "cancelled");
        assert_coupon(&app, &buyer, coupon_id, "issued", None).await;
        assert_eq!(levels(&app, &buyer).await, (200, 0, 200));
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("release", 100, sooner, first_id),
                row("release", 20, later, first_id)
            ])
        );
        assert_eq!(app.stock(product).await.held, 0);
        assert_eq!(
            order_points_events(&app, &buyer).await,
            ["points.held", "points.released"]
        );
        assert_eq!(
            coupon_events(&app).await,
            ["coupon.held", "coupon.returned"]
        );

        // Cancelling again releases nothing twice.
        expect_error(
            &app.cancel(&buyer, first_id).await,
            409,
            "order_not_cancellable",
        );
        assert_eq!(rows_of_kind(&app, &buyer, "release").await.len(), 2);
        assert_eq!(levels(&app, &buyer).await, (200, 0, 200));

        // The same coupon and the released points work in a new order, from the same lots.
        let second = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(120)).await;
        let second_id = int(&second, "id");
        assert_eq!(amounts(&second), (1_000, 100, 120, 780));
        assert_eq!(second["coupon_id"].as_i64(), Some(coupon_id));
        assert_coupon(&app, &buyer, coupon_id, "held", Some(second_id)).await;
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("hold", 100, sooner, second_id),
                row("hold", 20, later, second_id)
            ])
        );
        assert_eq!(levels(&app, &buyer).await, (200, 120, 80));
        assert_eq!(app.stock(product).await.held, 1);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    an_expired_payment_deadline_releases_the_coupon_and_the_points,
    config = |c| {
        // Short enough that moving the clock past two deadlines stays within the life of
        // the test's access tokens.
        c.hold_ttl_secs = 60;
        c.sweeper_interval_ms = 100;
    },
    |app| async move {
        let buyer = app.buyer().await;
        let lot = grant_lot(&app, &buyer, 500, Some(in_days(20))).await;
        let product = app.simple_product(1_000, 5).await;
        let coupon_id = coupon(&app, &buyer, &fixed(200)).await;

        let first = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(300)).await;
        let first_id = int(&first, "id");
        assert_eq!(amounts(&first), (1_000, 200, 300, 500));
        wait_until_expired(&app, &buyer, first_id).await;

        assert_coupon(&app, &buyer, coupon_id, "issued", None).await;
        assert_eq!(levels(&app, &buyer).await, (500, 0, 500));
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("release", 300, lot, first_id),
                row("hold", 300, lot, first_id)
            ])
        );
        assert_eq!(app.stock(product).await.held, 0);
        assert_eq!(
            order_points_events(&app, &buyer).await,
            ["points.held", "points.released"]
        );
        assert_eq!(
            coupon_events(&app).await,
            ["coupon.held", "coupon.returned"]
        );
        expect_error(
            &pay_amount(&app, &buyer, first_id, 500).await,
            409,
            "order_not_payable",
        );
        assert!(rows_of_kind(&app, &buyer, "spend").await.is_empty());

        // The same coupon and points again, in a new order (which expires in turn).
        let second = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(300)).await;
        let second_id = int(&second, "id");
        assert_eq!(amounts(&second), (1_000, 200, 300, 500));
        assert_eq!(second["coupon_id"].as_i64(), Some(coupon_id));
        wait_until_expired(&app, &buyer, second_id).await;
        assert_coupon(&app, &buyer, coupon_id, "issued", None).await;
        assert_eq!(levels(&app, &buyer).await, (500, 0, 500));
        assert_eq!(rows_of_kind(&app, &buyer, "release").await.len(), 2);
        assert_eq!(
            coupon_events(&app).await,
            [
                "coupon.held",
                "coupon.returned",
                "coupon.held",
                "coupon.returned"
            ]
        );
        app.assert_verify_clean().await;
    }
);

// ---------------------------------------------------------------------------------------
// 4. A refund gives both back
// ---------------------------------------------------------------------------------------

backend_tests!(
    a_refund_restores_the_coupon_and_refunds_the_points,
    |app| async move {
        let buyer = app.buyer().await;
        let later = grant_lot(&app, &buyer, 100, Some(in_days(20))).await;
        let sooner = grant_lot(&app, &buyer, 100, Some(in_days(5))).await;
        let product = app.simple_product(2_000, 3).await;
        let coupon_id = coupon(&app, &buyer, &fixed(500)).await;

        let order = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(150)).await;
        let order_id = int(&order, "id");
        assert_eq!(amounts(&order), (2_000, 500, 150, 1_350));
        expect(&app.pay(&buyer, &order).await, 200);
        assert_coupon(&app, &buyer, coupon_id, "used", Some(order_id)).await;
        assert_eq!(levels(&app, &buyer).await, (50, 0, 50));
        assert_eq!(app.stock(product).await.on_hand, 2);

        let refunded = app.cancel(&buyer, order_id).await;
        assert_eq!(expect(&refunded, 200)["status"], "refunded", "{refunded:?}");
        assert_coupon(&app, &buyer, coupon_id, "issued", None).await;
        assert_eq!(levels(&app, &buyer).await, (200, 0, 200));
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("refund", 100, sooner, order_id),
                row("refund", 50, later, order_id)
            ])
        );
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 3,
                held: 0,
                available: 3
            }
        );
        assert_eq!(
            order_points_events(&app, &buyer).await,
            ["points.held", "points.spent", "points.refunded"]
        );
        assert_eq!(
            coupon_events(&app).await,
            ["coupon.held", "coupon.used", "coupon.returned"]
        );

        // Refunded once.
        expect_error(
            &app.cancel(&buyer, order_id).await,
            409,
            "order_not_cancellable",
        );
        assert_eq!(rows_of_kind(&app, &buyer, "refund").await.len(), 2);
        assert_eq!(levels(&app, &buyer).await, (200, 0, 200));

        // The points went back to their lots with their expiry (the 5-day lot is taken
        // first again), and the coupon is usable again.
        let again = place_ok(&app, &buyer, &[(product, 1)], Some(coupon_id), Some(120)).await;
        let again_id = int(&again, "id");
        assert_eq!(amounts(&again), (2_000, 500, 120, 1_380));
        assert_coupon(&app, &buyer, coupon_id, "held", Some(again_id)).await;
        assert_eq!(
            newest_rows(&app, &buyer, 2).await,
            sorted(vec![
                row("hold", 100, sooner, again_id),
                row("hold", 20, later, again_id)
            ])
        );
        assert_eq!(levels(&app, &buyer).await, (200, 120, 80));
        app.assert_verify_clean().await;
    }
);

// ---------------------------------------------------------------------------------------
// 5, 6. Concurrency
// ---------------------------------------------------------------------------------------

backend_tests!(
    thirty_concurrent_orders_hold_no_more_than_a_thousand_points,
    |app| async move {
        let buyer = app.buyer().await;
        let lot = grant_lot(&app, &buyer, 1_000, Some(in_days(20))).await;
        let product = app.simple_product(1_000, 30).await;
        let buyer = Arc::new(buyer);

        let replies = all_at_once(30, |_| {
            let (app, buyer) = (app.clone(), buyer.clone());
            async move { place(&app, &buyer, &[(product, 1)], None, Some(100)).await }
        })
        .await;
        let summary: Vec<(u16, Value)> = replies
            .iter()
            .map(|r| (r.0.as_u16(), r.1["error"]["code"].clone()))
            .collect();
        let placed: Vec<&Value> = replies
            .iter()
            .filter(|r| r.0 == 201)
            .map(|r| &r.1)
            .collect();
        let refused = replies
            .iter()
            .filter(|r| r.0 == 409 && r.1["error"]["code"] == "insufficient_points")
            .count();
        assert_eq!((placed.len(), refused), (10, 20), "{summary:?}");
        for order in &placed {
            assert_eq!(amounts(order), (1_000, 0, 100, 900), "{order}");
        }
        let ids: HashSet<i64> = placed.iter().map(|o| int(o, "id")).collect();
        assert_eq!(ids.len(), 10);

        assert_eq!(levels(&app, &buyer).await, (1_000, 1_000, 0));
        let holds = rows_of_kind(&app, &buyer, "hold").await;
        assert_eq!(holds.len(), 10, "{holds:?}");
        let held_for: HashSet<i64> = holds.iter().map(|r| int(r, "order_id")).collect();
        assert_eq!(held_for, ids, "one hold per placed order");
        for hold in &holds {
            assert_eq!((int(hold, "amount"), int(hold, "lot_id")), (100, lot));
        }
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 30,
                held: 10,
                available: 20
            }
        );
        assert_eq!(app.movements_of_kind(product, "hold").await.len(), 10);
        assert_eq!(app.order_count(&buyer).await, 10);
        assert_eq!(metric(&app, "points_held_total").await, 1000.0);
        let held_events = order_points_events(&app, &buyer).await;
        assert_eq!(held_events, vec!["points.held"; 10]);

        // Nothing left: one more point is refused.
        expect_error(
            &place(&app, &buyer, &[(product, 1)], None, Some(1)).await,
            409,
            "insufficient_points",
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(one_coupon_in_ten_concurrent_orders, |app| async move {
    let buyer = app.buyer().await;
    let product = app.simple_product(1_000, 20).await;
    let coupon_id = coupon(&app, &buyer, &fixed(100)).await;
    let buyer = Arc::new(buyer);

    let replies = all_at_once(10, |_| {
        let (app, buyer) = (app.clone(), buyer.clone());
        async move { place(&app, &buyer, &[(product, 1)], Some(coupon_id), None).await }
    })
    .await;
    let summary: Vec<(u16, Value)> = replies
        .iter()
        .map(|r| (r.0.as_u16(), r.1["error"]["code"].clone()))
        .collect();
    let placed: Vec<&Value> = replies
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.1)
        .collect();
    let in_use = replies
        .iter()
        .filter(|r| r.0 == 409 && r.1["error"]["code"] == "coupon_in_use")
        .count();
    assert_eq!((placed.len(), in_use), (1, 9), "{summary:?}");
    let winner = int(placed[0], "id");
    assert_eq!(amounts(placed[0]), (1_000, 100, 0, 900));
    assert_coupon(&app, &buyer, coupon_id, "held", Some(winner)).await;
    assert_eq!(app.order_count(&buyer).await, 1);
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 20,
            held: 1,
            available: 19
        }
    );
    assert_eq!(coupon_events(&app).await, ["coupon.held"]);
    app.assert_verify_clean().await;
});

// ---------------------------------------------------------------------------------------
// 7. Refusals change nothing
// ---------------------------------------------------------------------------------------

/// Everything a refused order must leave as it was, for one buyer.
#[derive(Debug, PartialEq)]
struct Snapshot {
    orders: i64,
    stock: Vec<Stock>,
    points: (i64, i64, i64),
    ledger: Vec<Value>,
    coupons: Vec<Value>,
    events: usize,
}

async fn snapshot(app: &TestApp, buyer: &str, products: &[i64]) -> Snapshot {
    let mut stock = Vec::new();
    for product in products {
        stock.push(app.stock(*product).await);
    }
    let coupons = app.get("/me/coupons?page=1&size=100", Some(buyer)).await;
    Snapshot {
        orders: app.order_count(buyer).await,
        stock,
        points: levels(app, buyer).await,
        ledger: history(app, buyer).await,
        coupons: array(expect(&coupons, 200), "items").clone(),
        events: all_events(app).await.len(),
    }
}

backend_tests!(
    refused_coupons_and_points_change_nothing,
    |app| async move {
        let buyer = app.buyer().await;
        let other = app.buyer().await;
        grant_lot(&app, &buyer, 1_000, Some(in_days(20))).await;
        let product = app.simple_product(10_000, 10).await;
        let cheap = app.simple_product(800, 10).await;

        // A coupon whose window (and so the coupon) closes in a few seconds.
        let mut closing = fixed(1_000);
        closing["issue_ends_at"] =
            json!(stampede::clock::Clock::now(&stampede::clock::SystemClock)
                .plus_secs(3)
                .to_rfc3339());
        let expired = coupon(&app, &buyer, &closing).await;
        let good_campaign = campaign(&app, &with_min_order(fixed(1_000), 5_000)).await;
        let good = claim(&app, good_campaign, &buyer).await;
        let theirs = claim(&app, good_campaign, &other).await;
        let high_minimum = coupon(&app, &buyer, &with_min_order(fixed(1_000), 10_001)).await;
        let small = coupon(&app, &buyer, &fixed(300)).await;
        // One coupon held by an open order, one used by a paid one.
        let busy = coupon(&app, &buyer, &fixed(1_000)).await;
        let busy_order = place_ok(&app, &buyer, &[(product, 1)], Some(busy), None).await;
        let used = coupon(&app, &buyer, &fixed(1_000)).await;
        let used_order = place_ok(&app, &buyer, &[(product, 1)], Some(used), None).await;
        expect(&app.pay(&buyer, &used_order).await, 200);
        eventually(WAIT, "the coupon to expire", || async {
            (my_coupon(&app, &buyer, expired).await["status"] == "expired").then_some(())
        })
        .await;

        let products = [product, cheap];
        let before = snapshot(&app, &buyer, &products).await;
        let before_other = snapshot(&app, &other, &products).await;
        assert_eq!(before.points, (1_000, 0, 1_000));

        let one: &[(i64, i64)] = &[(product, 1)];
        let one_cheap: &[(i64, i64)] = &[(cheap, 1)];
        // (items, coupon_id, points, status, code)
        let refusals = [
            (one, Some(987_654_321), None, 404, "coupon_not_found"),
            (one, Some(theirs), None, 404, "coupon_not_found"),
            (one, Some(theirs), Some(100), 404, "coupon_not_found"),
            (one, Some(expired), None, 409, "coupon_expired"),
            (one, Some(busy), None, 409, "coupon_in_use"),
            (one, Some(used), None, 409, "coupon_in_use"),
            (
                one,
                Some(high_minimum),
                None,
                422,
                "coupon_min_order_not_met",
            ),
            (one_cheap, Some(good), None, 422, "coupon_min_order_not_met"),
            (one, None, Some(1_001), 409, "insufficient_points"),
            (one, Some(good), Some(1_001), 409, "insufficient_points"),
            (one_cheap, None, Some(801), 422, "points_exceed_payable"),
            (
                one_cheap,
                Some(small),
                Some(501),
                422,
                "points_exceed_payable",
            ),
            (one, None, Some(-1), 422, "validation_failed"),
            (one, None, Some(MAX_WON + 1), 422, "validation_failed"),
            (one, Some(0), None, 422, "validation_failed"),
            (one, Some(-5), None, 422, "validation_failed"),
            (one, Some(good), Some(-100), 422, "validation_failed"),
        ];
        for (items, coupon_id, points, status, code) in &refusals {
            let reply = place(&app, &buyer, items, *coupon_id, *points).await;
            let what = format!("coupon {coupon_id:?}, points {points:?}: {reply:?}");
            assert_eq!(reply.0.as_u16(), *status, "{what}");
            assert_eq!(reply.1["error"]["code"], *code, "{what}");
            expect_error(&reply, *status, code);
        }
        // A buyer without any points account.
        for points in [1, 100] {
            expect_error(
                &place(&app, &other, one, None, Some(points)).await,
                409,
                "insufficient_points",
            );
        }
        let after = snapshot(&app, &buyer, &products).await;
        assert_eq!(after, before, "a refused order changed something");
        assert_eq!(snapshot(&app, &other, &products).await, before_other);
        assert_coupon(&app, &buyer, expired, "expired", None).await;
        assert_coupon(&app, &buyer, busy, "held", Some(int(&busy_order, "id"))).await;
        assert_coupon(&app, &buyer, used, "used", Some(int(&used_order, "id"))).await;
        assert_coupon(&app, &other, theirs, "issued", None).await;

        // Right at the limits: all the points the coupon leaves, the minimum met.
        let exact = place_ok(&app, &buyer, one_cheap, Some(small), Some(500)).await;
        assert_eq!(amounts(&exact), (800, 300, 500, 0));
        let all = place_ok(&app, &buyer, &[(product, 2)], Some(good), Some(500)).await;
        assert_eq!(amounts(&all), (20_000, 1_000, 500, 18_500));
        assert_eq!(levels(&app, &buyer).await, (1_000, 1_000, 0));
        assert_eq!(
            expect(&app.get("/me/points", Some(&other)).await, 200)["balance"],
            0
        );
        app.assert_verify_clean().await;
    }
);

// Points of a lot past its `expires_at` cannot be held, even before the expiry job ran.
backend_tests!(points_of_an_expired_lot_are_never_held, |app| async move {
    let buyer = app.buyer().await;
    let user_id = app.user_id(&buyer).await;
    let admin_id = app.user_id(&app.admin_token().await).await;
    // Only the store accepts a past expiry; the expiry job has not run (one day away).
    let op = NewPointsOperation {
        admin_id,
        idempotency_key: unique("past"),
        request_hash: "test".into(),
        user_id,
        kind: PointsOperationKind::Grant,
        amount: 300,
        reason: "old".into(),
        expires_at: Some(
            stampede::clock::Clock::now(&stampede::clock::SystemClock).minus_secs(3_600),
        ),
    };
    let outcome = app
        .state
        .store
        .apply_points_operation(
            &op,
            stampede::clock::Clock::now(&stampede::clock::SystemClock),
        )
        .await;
    assert!(
        matches!(outcome, Ok(PointsOperationOutcome::Done(_))),
        "{outcome:?}"
    );
    let fresh = grant_lot(&app, &buyer, 200, Some(in_days(10))).await;
    let product = app.simple_product(1_000, 5).await;

    let before = history(&app, &buyer).await;
    expect_error(
        &place(&app, &buyer, &[(product, 1)], None, Some(201)).await,
        409,
        "insufficient_points",
    );
    assert_eq!(history(&app, &buyer).await, before);
    assert_eq!(app.order_count(&buyer).await, 0);

    let order = place_ok(&app, &buyer, &[(product, 1)], None, Some(200)).await;
    let order_id = int(&order, "id");
    assert_eq!(amounts(&order), (1_000, 0, 200, 800));
    let holds = rows_of_kind(&app, &buyer, "hold").await;
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(
        (
            int(&holds[0], "amount"),
            int(&holds[0], "lot_id"),
            int(&holds[0], "order_id")
        ),
        (200, fresh, order_id)
    );
    let points = expect(&app.get("/me/points", Some(&buyer)).await, 200).clone();
    assert_eq!(int(&points, "held"), 200, "{points}");
    expect_error(
        &place(&app, &buyer, &[(product, 1)], None, Some(1)).await,
        409,
        "insufficient_points",
    );
    app.assert_verify_clean().await;
});

// ---------------------------------------------------------------------------------------
// 8. Idempotency
// ---------------------------------------------------------------------------------------

backend_tests!(
    retries_replay_and_other_benefits_are_a_mismatch,
    |app| async move {
        let buyer = app.buyer().await;
        grant_lot(&app, &buyer, 1_000, Some(in_days(30))).await;
        let product = app.simple_product(1_000, 10).await;
        let first_coupon = coupon(&app, &buyer, &fixed(100)).await;
        let second_coupon = coupon(&app, &buyer, &fixed(200)).await;
        let key = Arc::new(unique("key"));
        let items = [(product, 1)];
        let body = Arc::new(order_body_with(&items, Some(first_coupon), Some(100)));

        // Ten tries of one request at once: one order, holding once.
        let buyer = Arc::new(buyer);
        let replies = all_at_once(10, |_| {
            let (app, buyer, key, body) = (app.clone(), buyer.clone(), key.clone(), body.clone());
            async move { app.post_idem("/orders", Some(&buyer), &key, &body).await }
        })
        .await;
        for reply in &replies {
            assert!(
                reply.0 == 200 || reply.0 == 201,
                "retry not answered 2xx: {reply:?}"
            );
        }
        let ids: HashSet<i64> = replies.iter().map(|r| int(&r.1, "id")).collect();
        assert_eq!(ids.len(), 1, "one key made several orders: {ids:?}");
        assert_eq!(replies.iter().filter(|r| r.0 == 201).count(), 1);
        let order = replies[0].1.clone();
        let order_id = int(&order, "id");
        for reply in &replies {
            assert_eq!(amounts(&reply.1), (1_000, 100, 100, 800), "{reply:?}");
            assert_eq!(reply.1["coupon_id"].as_i64(), Some(first_coupon));
        }

        // Later, the same body replays.
        let replay = app.post_idem("/orders", Some(&buyer), &key, &body).await;
        let replayed = expect(&replay, 200);
        assert_eq!(int(replayed, "id"), order_id);
        assert_eq!(amounts(replayed), (1_000, 100, 100, 800));
        assert_eq!(replayed["coupon_id"].as_i64(), Some(first_coupon));

        // Another coupon or another number of points under the same key: refused.
        let mismatches = [
            order_body_with(&items, Some(second_coupon), Some(100)),
            order_body_with(&items, None, Some(100)),
            order_body_with(&items, Some(first_coupon), Some(101)),
            order_body_with(&items, Some(first_coupon), Some(99)),
            order_body_with(&items, Some(first_coupon), None),
            order_body_with(&items, Some(second_coupon), None),
        ];
        for other in &mismatches {
            let reply = app.post_idem("/orders", Some(&buyer), &key, other).await;
            assert_eq!(
                reply.1["error"]["code"], "idempotency_mismatch",
                "{other}: {reply:?}"
            );
            expect_error(&reply, 422, "idempotency_mismatch");
        }

        assert_eq!(app.order_count(&buyer).await, 1);
        assert_eq!(levels(&app, &buyer).await, (1_000, 100, 900));
        assert_eq!(rows_of_kind(&app, &buyer, "hold").await.len(), 1);
        assert_eq!(app.stock(product).await.held, 1);
        assert_coupon(&app, &buyer, first_coupon, "held", Some(order_id)).await;
        assert_coupon(&app, &buyer, second_coupon, "issued", None).await;
        assert_eq!(coupon_events(&app).await, ["coupon.held"]);

        // Under a key of its own the other coupon works.
        let other = place_ok(&app, &buyer, &items, Some(second_coupon), Some(100)).await;
        assert_ne!(int(&other, "id"), order_id);
        assert_eq!(amounts(&other), (1_000, 200, 100, 700));
        assert_eq!(levels(&app, &buyer).await, (1_000, 200, 800));
        app.assert_verify_clean().await;
    }
);
