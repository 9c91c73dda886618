//! Bad input gets the documented 4xx and its stable error code, and changes nothing:
//! after every refusal the stock, the ledger and the buyer's orders are checked again.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Sends `body` as raw bytes with the given content type (or none).
pub(crate) async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = app
        .client
        .request(method, app.api(path))
        .header("Idempotency-Key", unique("key"))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    read_reply(request.send().await.expect("send")).await
}

/// The world of one bad-input test: a product of 10 units and a buyer with no orders.
struct Scene {
    product: i64,
    buyer: String,
    product_json: Value,
}

impl Scene {
    async fn new(app: &TestApp) -> Scene {
        let product = app.simple_product(4_200, 10).await;
        let buyer = app.buyer().await;
        let product_json =
            expect(&app.get(&format!("/products/{product}"), None).await, 200).clone();
        Scene {
            product,
            buyer,
            product_json,
        }
    }

    async fn assert_unchanged(&self, app: &TestApp, after: &str) {
        assert_eq!(
            app.stock(self.product).await,
            Stock {
                on_hand: 10,
                held: 0,
                available: 10
            },
            "stock changed after {after}"
        );
        assert_eq!(
            app.movements(self.product).await.len(),
            1,
            "ledger changed after {after}"
        );
        assert_eq!(
            app.order_count(&self.buyer).await,
            0,
            "an order appeared after {after}"
        );
        let now = app.get(&format!("/products/{}", self.product), None).await;
        assert_eq!(
            expect(&now, 200),
            &self.product_json,
            "product changed after {after}"
        );
    }
}

backend_tests!(
    bad_order_bodies_are_refused_without_effect,
    |app| async move {
        let scene = Scene::new(&app).await;
        let (p, buyer) = (scene.product, scene.buyer.as_str());
        let json_type = Some("application/json");

        let malformed = raw(
            &app,
            Method::POST,
            "/orders",
            Some(buyer),
            json_type,
            r#"{"items": ["#,
        )
        .await;
        expect_error(&malformed, 400, "malformed_json");
        scene.assert_unchanged(&app, "malformed JSON").await;

        let invalid: Vec<(&str, Value)> = vec![
            (
                "quantity as a string",
                json!({"items": [{"product_id": p, "quantity": "two"}]}),
            ),
            (
                "fractional quantity",
                json!({"items": [{"product_id": p, "quantity": 1.5}]}),
            ),
            (
                "product_id as a string",
                json!({"items": [{"product_id": p.to_string(), "quantity": 1}]}),
            ),
            ("missing items", json!({})),
            ("items not a list", json!({"items": 5})),
            ("body is a list", json!([{"product_id": p, "quantity": 1}])),
            ("missing quantity", json!({"items": [{"product_id": p}]})),
            ("missing product_id", json!({"items": [{"quantity": 1}]})),
            ("quantity 0", order_body(&[(p, 0)])),
            ("quantity -1", order_body(&[(p, -1)])),
            ("quantity 10^12", order_body(&[(p, 1_000_000_000_000)])),
            ("quantity 1,000,001", order_body(&[(p, 1_000_001)])),
            (
                "quantity beyond i64",
                json!({"items": [{"product_id": p, "quantity": 1e30}]}),
            ),
            ("empty items", json!({"items": []})),
            ("duplicate product ids", order_body(&[(p, 1), (p, 2)])),
        ];
        for (what, body) in &invalid {
            let reply = app
                .post_idem("/orders", Some(buyer), &unique("key"), body)
                .await;
            assert_eq!(reply.0.as_u16(), 422, "{what}: {reply:?}");
            expect_error(&reply, 422, "validation_failed");
            scene.assert_unchanged(&app, what).await;
        }

        // One million passes validation; the stock then decides.
        expect_error(
            &app.place_order(buyer, &[(p, 1_000_000)]).await,
            409,
            "out_of_stock",
        );
        scene.assert_unchanged(&app, "quantity 1,000,000").await;

        expect_error(
            &app.place_order(buyer, &[(p + 1_000_000, 1)]).await,
            404,
            "not_found",
        );
        expect_error(
            &app.place_order(buyer, &[(p, 1), (p + 1_000_000, 1)]).await,
            404,
            "not_found",
        );
        scene.assert_unchanged(&app, "unknown product").await;

        let no_key = app
            .post("/orders", Some(buyer), &order_body(&[(p, 1)]))
            .await;
        expect_error(&no_key, 400, "idempotency_key_required");
        scene.assert_unchanged(&app, "no Idempotency-Key").await;

        let body = order_body(&[(p, 1)]).to_string();
        let untyped = raw(
            &app,
            Method::POST,
            "/orders",
            Some(buyer),
            None,
            body.clone(),
        )
        .await;
        expect_error(&untyped, 415, "unsupported_media_type");
        let text = raw(
            &app,
            Method::POST,
            "/orders",
            Some(buyer),
            Some("text/plain"),
            body,
        )
        .await;
        expect_error(&text, 415, "unsupported_media_type");
        scene.assert_unchanged(&app, "no JSON content type").await;

        let limit = app.limits.body_limit_bytes;
        let mut huge = order_body(&[(p, 1)]);
        huge["padding"] = json!("x".repeat(limit + 1));
        let huge = huge.to_string();
        assert!(huge.len() > limit);
        let too_big = raw(&app, Method::POST, "/orders", Some(buyer), json_type, huge).await;
        expect_error(&too_big, 413, "payload_too_large");
        scene.assert_unchanged(&app, "an oversized body").await;
    }
);

backend_tests!(at_most_50_items_per_order, |app| async move {
    let partner = app.create_partner("Wide", 1000).await;
    let mut products = Vec::new();
    for _ in 0..51 {
        products.push(app.product_of(partner, 100, 3, None).await);
    }
    let buyer = app.buyer().await;
    let fifty_one: Vec<(i64, i64)> = products.iter().map(|&p| (p, 1)).collect();
    expect_error(
        &app.place_order(&buyer, &fifty_one).await,
        422,
        "validation_failed",
    );
    assert_eq!(app.order_count(&buyer).await, 0);
    for &p in &products {
        assert_eq!(app.stock(p).await.held, 0);
    }

    let order = app.order_ok(&buyer, &fifty_one[..50]).await;
    assert_eq!(int(&order, "total"), 50 * 100);
    assert_eq!(app.stock(products[0]).await.held, 1);
    assert_eq!(app.stock(products[50]).await.held, 0);
    app.assert_verify_clean().await;
});

backend_tests!(non_numeric_and_unknown_path_ids, |app| async move {
    let scene = Scene::new(&app).await;
    let admin = app.admin_token().await;
    let buyer = scene.buyer.as_str();

    expect_error(&app.get("/products/abc", None).await, 400, "invalid_path");
    expect_error(
        &app.get("/orders/abc", Some(buyer)).await,
        400,
        "invalid_path",
    );
    expect_error(
        &app.get("/products/1x/stock", Some(&admin)).await,
        400,
        "invalid_path",
    );
    let inbound = app
        .post(
            "/products/abc/inbound",
            Some(&admin),
            &json!({"quantity": 1}),
        )
        .await;
    expect_error(&inbound, 400, "invalid_path");
    let pay = json!({"payment_key": "pk", "amount": 1});
    expect_error(
        &app.post("/orders/abc/pay", Some(buyer), &pay).await,
        400,
        "invalid_path",
    );

    expect_error(
        &app.get("/products/987654321", None).await,
        404,
        "not_found",
    );
    expect_error(
        &app.get("/orders/987654321", Some(buyer)).await,
        404,
        "not_found",
    );
    expect_error(&app.cancel(buyer, 987_654_321).await, 404, "not_found");
    let inbound = app
        .post(
            "/products/987654321/inbound",
            Some(&admin),
            &json!({"quantity": 1}),
        )
        .await;
    expect_error(&inbound, 404, "not_found");
    let seller = json!({"email": unique_email("seller"), "password": PASSWORD});
    expect_error(
        &app.post("/partners/987654321/sellers", Some(&admin), &seller)
            .await,
        404,
        "not_found",
    );
    scene.assert_unchanged(&app, "bad path ids").await;
});

backend_tests!(
    bad_catalog_input_is_refused_without_effect,
    |app| async move {
        let scene = Scene::new(&app).await;
        let admin = app.admin_token().await;
        let partner = int(&scene.product_json, "partner_id");
        let total_products = || async {
            int(
                expect(&app.get("/products?page=1&size=10", None).await, 200),
                "total",
            )
        };
        assert_eq!(total_products().await, 1);

        let good = json!({"name": "Cap", "price": 100, "stock": 5, "partner_id": partner});
        let with = |key: &str, value: Value| {
            let mut body = good.clone();
            body[key] = value;
            body
        };
        let without = |key: &str| {
            let mut body = good.clone();
            body.as_object_mut().unwrap().remove(key);
            body
        };
        let bad_products = vec![
            ("negative price", with("price", json!(-1))),
            ("negative stock", with("stock", json!(-1))),
            ("price as text", with("price", json!("abc"))),
            ("missing name", without("name")),
            ("missing price", without("price")),
            ("max_per_user 0", with("max_per_user", json!(0))),
            (
                "release_at not RFC 3339",
                with("release_at", json!("tomorrow")),
            ),
        ];
        for (what, body) in &bad_products {
            let reply = app.post("/products", Some(&admin), body).await;
            assert_eq!(reply.0.as_u16(), 422, "{what}: {reply:?}");
            expect_error(&reply, 422, "validation_failed");
        }
        assert_eq!(total_products().await, 1, "a refused product was created");

        let path = format!("/products/{}", scene.product);
        for (what, body) in [
            ("negative price", json!({"price": -5})),
            ("price as text", json!({"price": "cheap"})),
            ("max_per_user 0", json!({"max_per_user": 0})),
            ("bad release_at", json!({"release_at": "soon"})),
        ] {
            let reply = app.patch(&path, Some(&admin), &body).await;
            assert_eq!(reply.0.as_u16(), 422, "PATCH {what}: {reply:?}");
            expect_error(&reply, 422, "validation_failed");
        }
        let inbound = format!("/products/{}/inbound", scene.product);
        for quantity in [json!(0), json!(-5), json!("x"), json!(1.5)] {
            let reply = app
                .post(&inbound, Some(&admin), &json!({"quantity": quantity}))
                .await;
            assert_eq!(reply.0.as_u16(), 422, "inbound {quantity}: {reply:?}");
            expect_error(&reply, 422, "validation_failed");
        }
        scene.assert_unchanged(&app, "bad catalog input").await;

        for bps in [10_001, -1] {
            let reply = app
                .post(
                    "/partners",
                    Some(&admin),
                    &json!({"name": "Greedy", "commission_rate_bps": bps}),
                )
                .await;
            expect_error(&reply, 422, "validation_failed");
        }
        let reply = app
            .post("/partners", Some(&admin), &json!({"name": "No rate"}))
            .await;
        expect_error(&reply, 422, "validation_failed");
        for bps in [0, 10_000] {
            let reply = app
                .post(
                    "/partners",
                    Some(&admin),
                    &json!({"name": "Edge", "commission_rate_bps": bps}),
                )
                .await;
            assert_eq!(int(expect(&reply, 201), "commission_rate_bps"), bps);
        }
    }
);

backend_tests!(bad_payment_and_account_input, |app| async move {
    let scene = Scene::new(&app).await;
    let buyer = scene.buyer.as_str();
    let order = app.order_ok(buyer, &[(scene.product, 1)]).await;
    let path = format!("/orders/{}/pay", int(&order, "id"));
    for (what, body) in [
        (
            "amount as text",
            json!({"payment_key": "pk_1", "amount": "lots"}),
        ),
        ("missing payment_key", json!({"amount": 4_200})),
        ("missing amount", json!({"payment_key": "pk_1"})),
    ] {
        let reply = app.post(&path, Some(buyer), &body).await;
        assert_eq!(reply.0.as_u16(), 422, "{what}: {reply:?}");
        expect_error(&reply, 422, "validation_failed");
    }
    let malformed = raw(
        &app,
        Method::POST,
        &path,
        Some(buyer),
        Some("application/json"),
        "{",
    )
    .await;
    expect_error(&malformed, 400, "malformed_json");
    assert_eq!(
        app.order(buyer, int(&order, "id")).await["status"],
        "pending_payment"
    );
    assert!(app
        .movements_of_kind(scene.product, "commit")
        .await
        .is_empty());
    assert_eq!(app.stock(scene.product).await.held, 1);

    for (what, body) in [
        (
            "not an email",
            json!({"email": "not-an-email", "password": PASSWORD}),
        ),
        ("missing password", json!({"email": unique_email("x")})),
        (
            "password as a number",
            json!({"email": unique_email("x"), "password": 12345678}),
        ),
    ] {
        let reply = app.post("/auth/signup", None, &body).await;
        assert_eq!(reply.0.as_u16(), 422, "{what}: {reply:?}");
        expect_error(&reply, 422, "validation_failed");
    }
    let login = raw(
        &app,
        Method::POST,
        "/auth/login",
        None,
        Some("application/json"),
        "{\"email\":",
    )
    .await;
    expect_error(&login, 400, "malformed_json");
});

// Found while fuzzing (scripts/fuzz.sh): every 4xx and 5xx is the documented ErrorBody, also
// where a route reads its body itself or the answer does not come from a handler's error.
backend_tests!(
    an_oversized_webhook_is_a_payload_too_large_error_body,
    |app| async move {
        let limit = app.limits.body_limit_bytes;
        let huge = format!("{{\"padding\":\"{}\"}}", "x".repeat(limit + 1));
        let reply = raw(
            &app,
            Method::POST,
            "/payments/portone/webhook",
            None,
            Some("application/json"),
            huge,
        )
        .await;
        expect_error(&reply, 413, "payload_too_large");
    }
);

backend_tests!(not_ready_is_an_unavailable_error_body, |app| async move {
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // The database going away, as far as this node can tell.
    app.state.store.close().await;
    let reply = read_reply(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    expect_error(&reply, 503, "unavailable");
});
