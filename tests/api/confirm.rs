//! Purchase confirmation (DESIGN §3): `paid → confirmed` by the buyer through
//! `POST /orders/{id}/confirm` once every partner order is delivered, or by the sweeper
//! `auto_confirm_after_secs` after the last delivery (tests/api/fulfilment.rs covers the
//! rule itself).

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

const SSE_WAIT: Duration = Duration::from_secs(10);
/// Ten minutes: the test moves the servers' clock past it instead of waiting (and stays
/// within the 15-minute life of its access tokens).
const AUTO_CONFIRM_AFTER_SECS: u64 = 600;

fn confirm_path(order_id: i64) -> String {
    format!("/orders/{order_id}/confirm")
}

async fn confirm(app: &TestApp, token: &str, order_id: i64) -> Reply {
    app.post_empty(&confirm_path(order_id), Some(token)).await
}

/// Event types of one order, oldest first.
async fn order_events(app: &TestApp, order_id: i64) -> Vec<String> {
    app.state
        .store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.aggregate_type == "order" && e.aggregate_id == order_id)
        .map(|e| e.event_type)
        .collect()
}

/// The next `status` event of an order's stream, past the `partner_order` events of the
/// deliveries (the dispatcher may still be sending them when the stream opens).
async fn next_status(stream: &mut SseReader) -> Value {
    loop {
        match stream.next_named_event(SSE_WAIT).await {
            (name, event) if name == "status" => return event,
            (name, event) => assert_eq!(name, "partner_order", "{event}"),
        }
    }
}

#[track_caller]
fn partner_statuses(order: &Value) -> Vec<&str> {
    array(order, "partner_orders")
        .iter()
        .map(|p| str_of(p, "status"))
        .collect()
}

/// A buyer's paid order of two products of two partners; returns the buyer and the order
/// as the pay reply showed it.
async fn paid_split_order(app: &TestApp) -> (String, Value, [i64; 2]) {
    let north = app.create_partner("North", 1000).await;
    let south = app.create_partner("South", 1000).await;
    let boots = app.product_of(north, 1_000, 5, None).await;
    let coats = app.product_of(south, 2_000, 5, None).await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(boots, 1), (coats, 2)]).await;
    assert!(order["paid_at"].is_null(), "not paid yet: {order}");
    let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
    assert_eq!(paid["status"], "paid", "{paid}");
    (buyer, paid, [boots, coats])
}

backend_tests!(buyer_confirms_a_paid_order, |app| async move {
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let (buyer, paid, products) = paid_split_order(&app).await;
    let order_id = int(&paid, "id");
    let paid_at = parse_time(&paid, "paid_at");
    let after = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    assert!(before <= paid_at && paid_at <= after, "paid_at {paid_at}");
    assert_eq!(partner_statuses(&paid), ["paid", "paid"]);
    let movements = [
        app.movements(products[0]).await,
        app.movements(products[1]).await,
    ];
    expect_error(
        &confirm(&app, &buyer, order_id).await,
        409,
        "order_not_delivered",
    );
    app.deliver_all(&paid).await;
    let delivered = app.order(&buyer, order_id).await;
    assert_eq!(partner_statuses(&delivered), ["delivered", "delivered"]);

    let mut stream = SseReader::new(app.subscribe(&buyer, order_id).await);
    assert_eq!(next_status(&mut stream).await["status"], "paid");

    let confirmed = expect(&confirm(&app, &buyer, order_id).await, 200).clone();
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(int(&confirmed, "id"), order_id);
    assert_eq!(partner_statuses(&confirmed), ["confirmed", "confirmed"]);
    for part in array(&confirmed, "partner_orders") {
        assert_eq!(part["confirmed_at"], confirmed["updated_at"], "{part}");
        assert!(part["delivered_at"].is_string(), "delivery is kept: {part}");
    }
    assert_eq!(confirmed["paid_at"], paid["paid_at"], "paid_at is kept");
    let fetched = app.order(&buyer, order_id).await;
    assert_eq!(fetched["status"], "confirmed");
    assert_eq!(partner_statuses(&fetched), ["confirmed", "confirmed"]);
    assert_eq!(fetched["paid_at"], paid["paid_at"]);

    assert_eq!(next_status(&mut stream).await["status"], "confirmed");
    assert_eq!(
        order_events(&app, order_id).await,
        ["order.placed", "order.paid", "order.confirmed"]
    );
    // Payment committed the stock; confirming moves none.
    assert_eq!(app.movements(products[0]).await, movements[0]);
    assert_eq!(app.movements(products[1]).await, movements[1]);

    // Confirmed is final here: not again, and no refund any more.
    expect_error(
        &confirm(&app, &buyer, order_id).await,
        409,
        "order_not_confirmable",
    );
    expect_error(
        &app.cancel(&buyer, order_id).await,
        409,
        "order_not_cancellable",
    );
    assert_eq!(app.order(&buyer, order_id).await["status"], "confirmed");
    assert_eq!(
        app.metric("orders_confirmed_total{reason=\"buyer\"}").await,
        1.0
    );
    app.assert_verify_clean().await;
});

backend_tests!(only_paid_orders_can_be_confirmed, |app| async move {
    let product = app.simple_product(1_000, 10).await;
    let buyer = app.buyer().await;

    let pending = app.order_ok(&buyer, &[(product, 1)]).await;
    let pending_id = int(&pending, "id");
    let cancelled = app.order_ok(&buyer, &[(product, 1)]).await;
    let cancelled_id = int(&cancelled, "id");
    expect(&app.cancel(&buyer, cancelled_id).await, 200);
    let refunded = app.order_ok(&buyer, &[(product, 1)]).await;
    let refunded_id = int(&refunded, "id");
    expect(&app.pay(&buyer, &refunded).await, 200);
    expect(&app.cancel(&buyer, refunded_id).await, 200);

    for (id, status) in [
        (pending_id, "pending_payment"),
        (cancelled_id, "cancelled"),
        (refunded_id, "refunded"),
    ] {
        let before = order_events(&app, id).await;
        expect_error(
            &confirm(&app, &buyer, id).await,
            409,
            "order_not_confirmable",
        );
        let now = app.order(&buyer, id).await;
        assert_eq!(now["status"], status, "{now}");
        assert_eq!(
            order_events(&app, id).await,
            before,
            "no event for a refusal"
        );
    }
    assert!(app.order(&buyer, pending_id).await["paid_at"].is_null());
    assert!(app.order(&buyer, cancelled_id).await["paid_at"].is_null());
    // A refund keeps the record of when the order was paid.
    parse_time(&app.order(&buyer, refunded_id).await, "paid_at");
    assert_eq!(
        app.stock(product).await.held,
        1,
        "the pending order still holds"
    );
    app.assert_verify_clean().await;
});

backend_tests!(confirm_is_for_the_owner_and_admins, |app| async move {
    let (buyer, paid, _) = paid_split_order(&app).await;
    let order_id = int(&paid, "id");

    let stranger = app.buyer().await;
    expect_error(&confirm(&app, &stranger, order_id).await, 404, "not_found");
    let seller = app
        .create_seller(int(&array(&paid, "partner_orders")[0], "partner_id"))
        .await;
    expect_error(&confirm(&app, &seller, order_id).await, 404, "not_found");
    let anonymous = app.post_empty(&confirm_path(order_id), None).await;
    expect_error(&anonymous, 401, "unauthorized");
    expect_error(&confirm(&app, &buyer, 987_654_321).await, 404, "not_found");
    assert_eq!(app.order(&buyer, order_id).await["status"], "paid");

    app.deliver_all(&paid).await;
    let admin = app.admin_token().await;
    let confirmed = confirm(&app, &admin, order_id).await;
    assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
    assert_eq!(
        app.metric("orders_confirmed_total{reason=\"admin\"}").await,
        1.0
    );
    app.assert_verify_clean().await;
});

backend_tests!(
    paid_orders_are_confirmed_automatically,
    config = |c| {
        c.auto_confirm_after_secs = AUTO_CONFIRM_AFTER_SECS;
        c.sweeper_interval_ms = 100;
    },
    |app| async move {
        let (buyer, paid, _) = paid_split_order(&app).await;
        let order_id = int(&paid, "id");
        app.deliver_all(&paid).await;
        let delivered = app.order(&buyer, order_id).await;
        // Ten minutes later by the servers' clock, without waiting for them.
        app.clock
            .advance(Duration::from_secs(AUTO_CONFIRM_AFTER_SECS + 1));
        // An order placed now is not paid: the sweeper must leave it alone.
        let product = app.simple_product(1_000, 5).await;
        let unpaid = app.order_ok(&buyer, &[(product, 1)]).await;

        let confirmed = eventually(
            Duration::from_secs(10),
            "the sweeper to confirm the paid order",
            || {
                let (app, buyer) = (app.clone(), buyer.clone());
                async move {
                    let order = app.order(&buyer, order_id).await;
                    (order["status"] == "confirmed").then_some(order)
                }
            },
        )
        .await;
        assert_eq!(partner_statuses(&confirmed), ["confirmed", "confirmed"]);
        assert_eq!(confirmed["paid_at"], paid["paid_at"]);
        assert_eq!(confirmed["delivered_at"], delivered["delivered_at"]);
        let waited = parse_time(&confirmed, "updated_at") - parse_time(&delivered, "delivered_at");
        assert!(
            waited >= time::Duration::seconds(AUTO_CONFIRM_AFTER_SECS as i64),
            "confirmed {waited} after delivery, before auto_confirm_after_secs"
        );
        assert_eq!(
            order_events(&app, order_id).await,
            ["order.placed", "order.paid", "order.confirmed"],
            "confirmed exactly once"
        );
        let unpaid_now = app.order(&buyer, int(&unpaid, "id")).await;
        assert_eq!(unpaid_now["status"], "pending_payment", "only paid orders");
        expect_error(
            &confirm(&app, &buyer, order_id).await,
            409,
            "order_not_confirmable",
        );
        assert_eq!(
            app.metric("orders_confirmed_total{reason=\"auto\"}").await,
            1.0
        );
        app.assert_verify_clean().await;
    }
);
