//! The catalog: creating, reading, listing and editing products, and the stock ledger
//! that inbound deliveries and orders write.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

backend_tests!(product_lifecycle_and_stock_ledger, |app| async move {
    let partner = app.create_partner("Atelier", 1200).await;
    let seller = app.create_seller(partner).await;

    let created = app
        .create_product(
            &seller,
            &json!({"name": "Linen shirt", "price": 59_000, "stock": 10, "max_per_user": 3}),
        )
        .await;
    let id = int(&created, "id");
    assert_eq!(int(&created, "partner_id"), partner);
    assert_eq!(created["name"], "Linen shirt");
    assert_eq!(int(&created, "price"), 59_000);
    assert_eq!(int(&created, "max_per_user"), 3);
    assert_eq!(
        (
            int(&created, "on_hand"),
            int(&created, "held"),
            int(&created, "available")
        ),
        (10, 0, 10)
    );
    let created_at = parse_time(&created, "created_at");
    parse_time(&created, "updated_at");
    if !created["release_at"].is_null() {
        parse_time(&created, "release_at");
    }

    // Anyone may read it, without a token.
    let fetched = app.get(&format!("/products/{id}"), None).await;
    assert_eq!(expect(&fetched, 200), &created);

    let patched = app
        .patch(
            &format!("/products/{id}"),
            Some(&seller),
            &json!({"name": "Linen shirt (ecru)", "price": 61_000, "max_per_user": 1}),
        )
        .await;
    let patched = expect(&patched, 200).clone();
    assert_eq!(int(&patched, "id"), id);
    assert_eq!(patched["name"], "Linen shirt (ecru)");
    assert_eq!(int(&patched, "price"), 61_000);
    assert_eq!(int(&patched, "max_per_user"), 1);
    assert_eq!(int(&patched, "partner_id"), partner);
    assert_eq!(int(&patched, "on_hand"), 10, "PATCH must not touch stock");
    assert!(parse_time(&patched, "updated_at") >= created_at);
    assert_eq!(parse_time(&patched, "created_at"), created_at);
    assert_eq!(
        expect(&app.get(&format!("/products/{id}"), None).await, 200),
        &patched
    );

    let inbound = app
        .post(
            &format!("/products/{id}/inbound"),
            Some(&seller),
            &json!({"quantity": 5, "memo": "restock"}),
        )
        .await;
    let levels = expect(&inbound, 200);
    assert_eq!(int(levels, "product_id"), id);
    assert_eq!(
        (
            int(levels, "on_hand"),
            int(levels, "held"),
            int(levels, "available")
        ),
        (15, 0, 15)
    );

    let movements = app.movements(id).await;
    assert_eq!(
        movements.len(),
        2,
        "initial stock and one inbound: {movements:?}"
    );
    let (newest, oldest) = (&movements[0], &movements[1]);
    assert!(
        int(newest, "id") > int(oldest, "id"),
        "movements must be newest first"
    );
    for m in &movements {
        assert_eq!(m["kind"], "inbound", "{m}");
        assert!(m["order_id"].is_null(), "{m}");
        parse_time(m, "created_at");
    }
    assert_eq!(
        (
            int(newest, "quantity"),
            int(newest, "on_hand_after"),
            int(newest, "held_after")
        ),
        (5, 15, 0)
    );
    assert_eq!(newest["memo"], "restock");
    assert_eq!(
        (int(oldest, "quantity"), int(oldest, "on_hand_after")),
        (10, 10)
    );

    // Orders show up in the product's numbers and the ledger.
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(id, 1)]).await;
    let product = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();
    assert_eq!(
        (
            int(&product, "on_hand"),
            int(&product, "held"),
            int(&product, "available")
        ),
        (15, 1, 14)
    );
    let first_page = app
        .get(
            &format!("/products/{id}/movements?page=1&size=1"),
            Some(&seller),
        )
        .await;
    let first_page = expect(&first_page, 200);
    assert_eq!(int(first_page, "total"), 3);
    assert_eq!(int(first_page, "size"), 1);
    let items = array(first_page, "items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "hold");
    assert_eq!(int(&items[0], "order_id"), int(&order, "id"));
    assert_eq!(
        (
            int(&items[0], "on_hand_after"),
            int(&items[0], "held_after")
        ),
        (15, 1)
    );
    let stock = app
        .get(&format!("/products/{id}/stock"), Some(&seller))
        .await;
    assert_eq!(
        expect(&stock, 200),
        &json!({"product_id": id, "on_hand": 15, "held": 1, "available": 14})
    );
    app.assert_verify_clean().await;
});

backend_tests!(products_are_listed_in_pages, |app| async move {
    let partner = app.create_partner("Shelf", 1000).await;
    let mut ids = BTreeSet::new();
    for stock in 1..=5 {
        ids.insert(app.product_of(partner, 1_000 * stock, stock, None).await);
    }

    let mut seen = BTreeSet::new();
    for (page, expected_len) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let reply = app
            .get(&format!("/products?page={page}&size=2"), None)
            .await;
        let body: &Value = expect(&reply, 200);
        assert_eq!(int(body, "page"), page);
        assert_eq!(int(body, "size"), 2);
        assert_eq!(int(body, "total"), 5);
        let items = array(body, "items");
        assert_eq!(items.len(), expected_len, "page {page}: {body}");
        for item in items {
            assert!(seen.insert(int(item, "id")), "product listed twice: {item}");
            assert_eq!(
                int(item, "available"),
                int(item, "on_hand") - int(item, "held")
            );
        }
    }
    assert_eq!(seen, ids);

    // Defaults apply without parameters.
    let reply = app.get("/products", None).await;
    let body = expect(&reply, 200);
    assert_eq!(int(body, "total"), 5);
    assert_eq!(array(body, "items").len(), 5);
});

backend_tests!(admin_manages_any_partners_products, |app| async move {
    let partner = app.create_partner("Consigned", 0).await;
    let admin = app.admin_token().await;
    let product = app
        .create_product(
            &admin,
            &json!({"name": "Vinyl", "price": 45_000, "stock": 2, "partner_id": partner}),
        )
        .await;
    let id = int(&product, "id");
    assert_eq!(int(&product, "partner_id"), partner);
    expect(
        &app.patch(
            &format!("/products/{id}"),
            Some(&admin),
            &json!({"price": 40_000}),
        )
        .await,
        200,
    );
    let inbound = app
        .post(
            &format!("/products/{id}/inbound"),
            Some(&admin),
            &json!({"quantity": 3}),
        )
        .await;
    assert_eq!(int(expect(&inbound, 200), "on_hand"), 5);
    assert_eq!(
        app.stock(id).await,
        Stock {
            on_hand: 5,
            held: 0,
            available: 5
        }
    );
    let product = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();
    assert_eq!(int(&product, "price"), 40_000);
});
