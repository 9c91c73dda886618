//! `stampede verify` and the operational endpoints. Verify must stay clean through every
//! kind of ledger write, and must notice when a balance and its ledger disagree — a
//! verifier that is always clean would pass every other test in this suite.

use crate::helpers::*;
use serde_json::Value;

backend_tests!(verify_is_clean_through_a_mixed_workload, |app| async move {
    app.assert_verify_clean().await;
    let partner = app.create_partner("Mixed", 900).await;
    let seller = app.create_seller(partner).await;
    let a = app.product_of(partner, 1_000, 20, None).await;
    let b = app.product_of(partner, 2_500, 5, Some(2)).await;
    let buyers = app.buyers(4).await;

    let paid = app.order_ok(&buyers[0], &[(a, 3), (b, 1)]).await;
    expect(&app.pay(&buyers[0], &paid).await, 200);
    let cancelled = app.order_ok(&buyers[1], &[(a, 2)]).await;
    expect(&app.cancel(&buyers[1], int(&cancelled, "id")).await, 200);
    let refunded = app.order_ok(&buyers[2], &[(b, 2)]).await;
    expect(&app.pay(&buyers[2], &refunded).await, 200);
    expect(&app.cancel(&buyers[2], int(&refunded, "id")).await, 200);
    let _pending = app.order_ok(&buyers[3], &[(a, 4), (b, 1)]).await;
    let inbound = app
        .post(
            &format!("/products/{a}/inbound"),
            Some(&seller),
            &serde_json::json!({"quantity": 7}),
        )
        .await;
    expect(&inbound, 200);

    assert_eq!(
        app.stock(a).await,
        Stock {
            on_hand: 24,
            held: 4,
            available: 20
        }
    );
    assert_eq!(
        app.stock(b).await,
        Stock {
            on_hand: 4,
            held: 1,
            available: 3
        }
    );
    app.assert_verify_clean().await;
});

/// Breaks one balance behind the server's back and expects verify to report it.
async fn assert_verify_catches(app: &TestApp, sql: &str) {
    app.assert_verify_clean().await;
    execute_sql(app, sql).await;
    let report = stampede::app::audit::run(&*app.state.store)
        .await
        .expect("verify::run");
    assert!(!report.is_clean(), "verify missed tampering: {sql}");
    assert!(!report.problems.is_empty());
}

backend_tests!(
    verify_notices_a_balance_that_disagrees_with_its_ledger,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyer = app.buyer().await;
        app.order_ok(&buyer, &[(product, 2)]).await;
        let sql = format!("UPDATE stock SET on_hand = on_hand + 1 WHERE product_id = {product}");
        assert_verify_catches(&app, &sql).await;
    }
);

backend_tests!(
    verify_notices_a_ledger_row_that_was_altered,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyer = app.buyer().await;
        app.order_ok(&buyer, &[(product, 2)]).await;
        let sql = format!("UPDATE stock_movements SET quantity = quantity - 1 WHERE product_id = {product} AND kind = 'hold'");
        assert_verify_catches(&app, &sql).await;
    }
);

backend_tests!(ops_endpoints, |app| async move {
    let get = |path: &'static str| {
        let app = app.clone();
        async move {
            let response = app.client.get(app.url(path)).send().await.expect(path);
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, content_type, response.text().await.expect(path))
        }
    };

    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    // Traffic first, so that the request counter has a sample to show.
    expect(&app.get("/products", None).await, 200);

    let (status, content_type, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain") || content_type.contains("openmetrics"),
        "{content_type}"
    );
    assert!(
        metrics.contains("http_requests_total"),
        "no http_requests_total in:\n{metrics}"
    );

    let (status, _, openapi) = get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let openapi: Value = serde_json::from_str(&openapi).expect("openapi.json is JSON");
    let paths = openapi["paths"]
        .as_object()
        .expect("openapi.json has paths");
    for path in [
        "/api/v1/orders",
        "/api/v1/products",
        "/api/v1/auth/login",
        "/api/v1/products/{id}/adjust",
        "/api/v1/orders/{id}/confirm",
        "/api/v1/partner-orders/{id}/ship",
        "/api/v1/partners/{id}/orders",
    ] {
        assert!(
            paths.contains_key(path),
            "openapi.json lacks {path}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    let (status, content_type, docs) = get("/docs").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        docs.to_lowercase().contains("swagger"),
        "not Swagger UI:\n{docs}"
    );

    // Unknown API routes answer in the error format too.
    expect_error(&app.get("/no-such-thing", None).await, 404, "not_found");
});

/// Tampers with one row, expects a problem naming `expected`, then undoes the tampering.
pub(crate) async fn assert_caught_and_undo(
    app: &TestApp,
    tamper: &str,
    undo: &str,
    expected: &str,
) {
    execute_sql(app, tamper).await;
    let report = stampede::app::audit::run(&*app.state.store)
        .await
        .expect("verify::run");
    let text = report.problems.join("\n");
    assert!(text.contains(expected), "verify missed {tamper:?}: {text}");
    execute_sql(app, undo).await;
    app.assert_verify_clean().await;
}

backend_tests!(
    verify_notices_coupons_and_points_out_of_step_with_their_order,
    |app| async move {
        let buyer = app.buyer().await;
        let product = app.simple_product(10_000, 5).await;
        let coupon_id =
            crate::order_benefits::coupon(&app, &buyer, &crate::order_benefits::fixed(1_000)).await;
        crate::points::grant_lot(&app, &buyer, 500, None).await;
        let mut body = order_body(&[(product, 1)]);
        body["coupon_id"] = serde_json::json!(coupon_id);
        body["points"] = serde_json::json!(300);
        let reply = app.post_idem("/orders", Some(&buyer), "v-1", &body).await;
        let order = expect(&reply, 201).clone();
        let id = int(&order, "id");
        assert_eq!(int(&order, "payable"), 10_000 - 1_000 - 300, "{order}");
        app.assert_verify_clean().await;

        assert_caught_and_undo(
            &app,
            &format!(
                "UPDATE user_coupons SET status = 'issued', order_id = NULL WHERE id = {coupon_id}"
            ),
            &format!(
                "UPDATE user_coupons SET status = 'held', order_id = {id} WHERE id = {coupon_id}"
            ),
            &format!("coupon {coupon_id} is issued for order None"),
        )
        .await;
        assert_caught_and_undo(
            &app,
            &format!("UPDATE point_holds SET status = 'spent' WHERE order_id = {id}"),
            &format!("UPDATE point_holds SET status = 'held' WHERE order_id = {id}"),
            "uses 300 points but its hold is Some((Spent, 300))",
        )
        .await;
        assert_caught_and_undo(
            &app,
            &format!("UPDATE orders SET discount = 900, payable = payable + 100 WHERE id = {id}"),
            &format!("UPDATE orders SET discount = 1000, payable = payable - 100 WHERE id = {id}"),
            &format!("order {id}: discount 900 but coupon {coupon_id} gives Some(1000)"),
        )
        .await;

        // Paid, the coupon is used and the points spent; a coupon marked used behind the
        // order's back is a stray.
        expect(&app.pay(&buyer, &order).await, 200);
        app.assert_verify_clean().await;
        let other =
            crate::order_benefits::coupon(&app, &buyer, &crate::order_benefits::fixed(5)).await;
        assert_caught_and_undo(
            &app,
            &format!("UPDATE user_coupons SET status = 'used', order_id = {id} WHERE id = {other}"),
            &format!(
                "UPDATE user_coupons SET status = 'issued', order_id = NULL WHERE id = {other}"
            ),
            &format!("user coupon {other} is used by order Some({id})"),
        )
        .await;
    }
);

backend_tests!(
    verify_notices_partner_orders_out_of_step_with_their_order,
    |app| async move {
        let product = app.simple_product(1_000, 5).await;
        let buyer = app.buyer().await;
        let pending = app.order_ok(&buyer, &[(product, 1)]).await;
        let pending_id = int(&pending, "id");
        let order = app.order_ok(&buyer, &[(product, 1)]).await;
        let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
        let paid_id = int(&paid, "id");
        let part = int(&array(&paid, "partner_orders")[0], "id");
        app.assert_verify_clean().await;

        // No shipped partner order on an unpaid order.
        assert_caught_and_undo(
            &app,
            &format!(
                "UPDATE partner_orders SET status = 'shipped', prepared_at = 1, shipped_at = 2, \
                 carrier = 'CJ', tracking_number = 'T' WHERE order_id = {pending_id}"
            ),
            &format!(
                "UPDATE partner_orders SET status = 'pending_payment', prepared_at = NULL, \
                 shipped_at = NULL, carrier = NULL, tracking_number = NULL \
                 WHERE order_id = {pending_id}"
            ),
            "1 partner order(s) are shipped while their order is pending_payment",
        )
        .await;
        // The sweeper would confirm an order whose part is still to deliver.
        assert_caught_and_undo(
            &app,
            &format!("UPDATE orders SET delivered_at = 5 WHERE id = {paid_id}"),
            &format!("UPDATE orders SET delivered_at = NULL WHERE id = {paid_id}"),
            &format!("order {paid_id}: delivered_at disagrees"),
        )
        .await;

        // A confirmed order's parts were all delivered: one forced back is noticed.
        app.deliver_all(&paid).await;
        let path = format!("/orders/{paid_id}/confirm");
        expect(&app.post_empty(&path, Some(&buyer)).await, 200);
        app.assert_verify_clean().await;
        assert_caught_and_undo(
            &app,
            &format!("UPDATE partner_orders SET status = 'delivered', confirmed_at = NULL WHERE id = {part}"),
            // Its confirmation time as its sale entry in the sellers' books recorded it.
            &format!("UPDATE partner_orders SET status = 'confirmed', confirmed_at = \
                (SELECT confirmed_at FROM settlement_entries WHERE partner_order_id = {part} \
                 AND kind = 'sale') WHERE id = {part}"),
            &format!("1 partner order(s) are delivered while their order is confirmed (e.g. partner order {part})"),
        )
        .await;
    }
);

backend_tests!(
    the_scheduled_verify_exports_the_drift_it_finds,
    |app| async move {
        use stampede::jobs::verify::{VerifyJob, VERIFY_LEASE};
        use stampede::jobs::{Scheduler, Trigger};
        let product = app.simple_product(10_000, 5).await;
        let job = VerifyJob::new(
            app.state.store.clone(),
            app.state.metrics.clone(),
            std::time::Duration::from_secs(app.state.config.verify_interval_secs),
        );
        let node = Scheduler::new(app.state.store.clone(), app.clock.clone(), "node-v".into());
        let drift = || app.state.metrics.ledger_drift.get();

        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(drift(), 0);
        // A balance moved behind the ledger's back: one difference, logged once, and the
        // gauge says so until it is put right.
        execute_sql(
            &app,
            &format!("UPDATE stock SET on_hand = on_hand + 1 WHERE product_id = {product}"),
        )
        .await;
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(drift(), 1);
        assert_eq!(job.logged.lock().unwrap().len(), 1);
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(drift(), 1);
        execute_sql(
            &app,
            &format!("UPDATE stock SET on_hand = on_hand - 1 WHERE product_id = {product}"),
        )
        .await;
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(drift(), 0);
        assert!(job.logged.lock().unwrap().is_empty());

        // It runs on one node at a time, under its lease, and admins see it.
        let other = Scheduler::new(app.state.store.clone(), app.clock.clone(), "node-w".into());
        assert!(!other.run_once(&job, Trigger::Timer).await.unwrap());
        let admin = app.admin_token().await;
        let jobs = expect(&app.get("/admin/jobs", Some(&admin)).await, 200).clone();
        let listed = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == VERIFY_LEASE)
            .cloned()
            .unwrap_or_else(|| panic!("no verify job in {jobs}"));
        assert_eq!(str_of(&listed, "runs_on"), "one_node");
        assert_eq!(str_of(&listed, "schedule"), "every 3600 s");
        assert_eq!(str_of(&listed, "holder"), "node-v");
        assert_eq!(str_of(&listed, "last_outcome"), "ok");
    }
);
