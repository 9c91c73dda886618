//! Who may do what: buyers see only their own orders, sellers touch only their own
//! partner's products, only admins run the marketplace, and nobody acts without a token.
//! Every refusal is also checked to have changed nothing.

use crate::helpers::*;
use serde_json::{json, Value};

backend_tests!(buyers_only_see_their_own_orders, |app| async move {
    let product = app.simple_product(2_000, 10).await;
    let alice = app.buyer().await;
    let bob = app.buyer().await;
    let alice_id = app.user_id(&alice).await;
    let order = app.order_ok(&alice, &[(product, 1)]).await;
    let order_id = int(&order, "id");
    app.order_ok(&alice, &[(product, 1)]).await;
    app.order_ok(&bob, &[(product, 1)]).await;

    expect_error(
        &app.get(&format!("/orders/{order_id}"), Some(&bob)).await,
        404,
        "not_found",
    );
    let pay = json!({"payment_key": unique("pk"), "amount": int(&order, "payable")});
    let paid = app
        .post(&format!("/orders/{order_id}/pay"), Some(&bob), &pay)
        .await;
    assert!(
        matches!(paid.0.as_u16(), 403 | 404),
        "a stranger paid: {paid:?}"
    );
    let cancelled = app.cancel(&bob, order_id).await;
    assert!(
        matches!(cancelled.0.as_u16(), 403 | 404),
        "a stranger cancelled: {cancelled:?}"
    );
    assert_eq!(
        app.order(&alice, order_id).await["status"],
        "pending_payment"
    );
    assert_eq!(app.stock(product).await.held, 3);

    let listed = app.get("/orders?page=1&size=50", Some(&alice)).await;
    let listed = expect(&listed, 200);
    assert_eq!(int(listed, "total"), 2);
    for item in array(listed, "items") {
        assert_eq!(
            int(item, "user_id"),
            alice_id,
            "someone else's order listed: {item}"
        );
    }
    assert_eq!(app.order_count(&bob).await, 1);

    let admin = app.admin_token().await;
    assert_eq!(app.order_count(&admin).await, 3, "admin sees every order");
    assert_eq!(
        app.order(&admin, order_id).await["status"],
        "pending_payment"
    );

    expect_error(
        &app.get(&format!("/orders/{order_id}"), None).await,
        401,
        "unauthorized",
    );
    expect_error(&app.get("/orders", None).await, 401, "unauthorized");
});

backend_tests!(
    sellers_only_manage_their_own_partners_products,
    |app| async move {
        let ours = app.create_partner("Ours", 1000).await;
        let theirs = app.create_partner("Theirs", 1000).await;
        let seller = app.create_seller(ours).await;
        let rival = app.create_seller(theirs).await;

        let me = expect(&app.get("/me", Some(&seller)).await, 200).clone();
        assert_eq!(me["role"], "seller");
        assert_eq!(int(&me, "partner_id"), ours);

        // Omitting partner_id means one's own partner.
        let product = app
            .create_product(
                &seller,
                &json!({"name": "Tote", "price": 30_000, "stock": 4}),
            )
            .await;
        let id = int(&product, "id");
        assert_eq!(int(&product, "partner_id"), ours);
        let before = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();

        let patch = app
            .patch(
                &format!("/products/{id}"),
                Some(&rival),
                &json!({"price": 1, "name": "Stolen"}),
            )
            .await;
        expect_error(&patch, 403, "forbidden");
        let inbound = app
            .post(
                &format!("/products/{id}/inbound"),
                Some(&rival),
                &json!({"quantity": 100}),
            )
            .await;
        expect_error(&inbound, 403, "forbidden");
        expect_error(
            &app.get(&format!("/products/{id}/movements"), Some(&rival))
                .await,
            403,
            "forbidden",
        );
        expect_error(
            &app.get(&format!("/products/{id}/stock"), Some(&rival))
                .await,
            403,
            "forbidden",
        );
        // Nor may a seller create products for another partner.
        let foreign = json!({"name": "Fake", "price": 1, "stock": 1, "partner_id": ours});
        expect_error(
            &app.post("/products", Some(&rival), &foreign).await,
            403,
            "forbidden",
        );

        let after = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();
        assert_eq!(after, before, "a refused request changed the product");
        assert_eq!(
            app.stock(id).await,
            Stock {
                on_hand: 4,
                held: 0,
                available: 4
            }
        );

        // The owner may do all of it.
        expect(
            &app.patch(
                &format!("/products/{id}"),
                Some(&seller),
                &json!({"price": 31_000}),
            )
            .await,
            200,
        );
        expect(
            &app.post(
                &format!("/products/{id}/inbound"),
                Some(&seller),
                &json!({"quantity": 1}),
            )
            .await,
            200,
        );
        expect(
            &app.get(&format!("/products/{id}/movements"), Some(&seller))
                .await,
            200,
        );
        expect(
            &app.get(&format!("/products/{id}/stock"), Some(&seller))
                .await,
            200,
        );
    }
);

backend_tests!(roles_gate_marketplace_administration, |app| async move {
    let partner = app.create_partner("Gatekeeper", 1000).await;
    let seller = app.create_seller(partner).await;
    let buyer = app.buyer().await;
    let product = json!({"name": "Nope", "price": 100, "stock": 1, "partner_id": partner});
    let new_partner = json!({"name": "Rogue", "commission_rate_bps": 0});
    let new_seller = |tag: &str| json!({"email": unique_email(tag), "password": PASSWORD});

    expect_error(
        &app.post("/products", Some(&buyer), &product).await,
        403,
        "forbidden",
    );
    for token in [buyer.as_str(), seller.as_str()] {
        expect_error(
            &app.post("/partners", Some(token), &new_partner).await,
            403,
            "forbidden",
        );
        let path = format!("/partners/{partner}/sellers");
        let email_body = new_seller("rogue");
        expect_error(
            &app.post(&path, Some(token), &email_body).await,
            403,
            "forbidden",
        );
        // The refused seller account does not exist.
        let login = json!({"email": email_body["email"], "password": PASSWORD});
        expect_error(
            &app.post("/auth/login", None, &login).await,
            401,
            "invalid_credentials",
        );
    }
    // Orders are for buyers.
    let product_id = app.product_of(partner, 100, 5, None).await;
    let seller_order = app.place_order(&seller, &[(product_id, 1)]).await;
    expect_error(&seller_order, 403, "forbidden");
    assert_eq!(app.stock(product_id).await.held, 0);

    // Without a token: 401, never 403 and never success.
    expect_error(
        &app.post("/products", None, &product).await,
        401,
        "unauthorized",
    );
    expect_error(
        &app.post("/partners", None, &new_partner).await,
        401,
        "unauthorized",
    );
    expect_error(&app.get("/me", None).await, 401, "unauthorized");
    let anonymous_order = app
        .post_idem(
            "/orders",
            None,
            &unique("key"),
            &order_body(&[(product_id, 1)]),
        )
        .await;
    expect_error(&anonymous_order, 401, "unauthorized");
    let path = format!("/products/{product_id}/inbound");
    expect_error(
        &app.post(&path, None, &json!({"quantity": 5})).await,
        401,
        "unauthorized",
    );
    assert_eq!(
        app.stock(product_id).await,
        Stock {
            on_hand: 5,
            held: 0,
            available: 5
        }
    );

    // Admins may create sellers, who then sign in as sellers of that partner.
    let admin = app.admin_token().await;
    let email = unique_email("seller");
    let created = app
        .post(
            &format!("/partners/{partner}/sellers"),
            Some(&admin),
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let created: &Value = expect(&created, 201);
    assert_eq!(created["role"], "seller");
    assert_eq!(int(created, "partner_id"), partner);
    assert_eq!(created["email"], email.as_str());
    // Admins must name the partner of a product.
    let orphan = json!({"name": "Orphan", "price": 100, "stock": 1});
    expect_error(
        &app.post("/products", Some(&admin), &orphan).await,
        422,
        "validation_failed",
    );
});
