//! `POST /products/batch`: a seller's (or an admin's) catalog import, each product checked
//! as `POST /products` checks one, all created in one transaction or none.

use crate::helpers::*;
use serde_json::{json, Value};

fn item(name: &str, price: i64, stock: i64) -> Value {
    json!({"name": name, "price": price, "stock": stock})
}

/// Rows of `table` (straight from the database, behind the server's back).
async fn count(app: &TestApp, table: &str) -> i64 {
    query_int(app, &format!("SELECT COUNT(*) FROM {table}")).await
}

/// Outbox events of type `event_type` about the products `ids`.
async fn events_about(app: &TestApp, event_type: &str, ids: &[i64]) -> i64 {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT COUNT(*) FROM outbox WHERE event_type = '{event_type}' \
         AND aggregate_type = 'product' AND aggregate_id IN ({})",
        ids.join(", ")
    );
    query_int(app, &sql).await
}

backend_tests!(
    a_seller_lists_a_batch_with_stock_ledger_and_events,
    |app| async move {
        let partner = app.create_partner("Atelier", 1200).await;
        let seller = app.create_seller(partner).await;
        let products = json!({"products": [
            {"name": "Linen shirt", "price": 59_000, "stock": 10, "max_per_user": 3},
            {"name": "  Wool scarf  ", "price": 0, "stock": 0},
            {"name": "Canvas tote", "price": 19_000, "stock": 4, "partner_id": partner,
             "release_at": "2030-01-01T00:00:00Z"},
        ]});
        let reply = app.post("/products/batch", Some(&seller), &products).await;
        let created = array(expect(&reply, 201), "products").clone();
        let ids: Vec<i64> = created.iter().map(|p| int(p, "id")).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
        assert_eq!(created[0]["name"], "Linen shirt");
        assert_eq!(
            created[1]["name"], "Wool scarf",
            "trimmed, as one at a time"
        );
        assert_eq!(int(&created[0], "max_per_user"), 3);
        assert_eq!(str_of(&created[2], "release_at"), "2030-01-01T00:00:00Z");
        for (product, stock) in created.iter().zip([10, 0, 4]) {
            assert_eq!(int(product, "partner_id"), partner);
            assert_eq!(int(product, "on_hand"), stock);
            // What the batch answered is what a read answers.
            let id = int(product, "id");
            let read = app.get(&format!("/products/{id}"), None).await;
            assert_eq!(expect(&read, 200), product);
            let movements = app.movements(id).await;
            if stock > 0 {
                assert_eq!(movements.len(), 1, "{movements:?}");
                assert_eq!(movements[0]["kind"], "inbound");
                assert_eq!(movements[0]["memo"], "initial stock");
                assert_eq!(int(&movements[0], "on_hand_after"), stock);
            } else {
                assert!(movements.is_empty(), "{movements:?}");
            }
        }
        // The outbox has every event a single create writes: one `product.created` each, and
        // a `stock.changed` for each product that opens with stock.
        assert_eq!(events_about(&app, "product.created", &ids).await, 3);
        assert_eq!(events_about(&app, "stock.changed", &ids).await, 2);
        let single = app.create_product(&seller, &item("Single", 1_000, 2)).await;
        let single = [int(&single, "id")];
        assert_eq!(events_about(&app, "product.created", &single).await, 1);
        assert_eq!(events_about(&app, "stock.changed", &single).await, 1);
        let listing = app.get("/products?size=10", None).await;
        assert_eq!(int(expect(&listing, 200), "total"), 4);
        // An admin names the partner of every product.
        let admin = app.admin_token().await;
        let body = json!({"products": [{"name": "By admin", "price": 1, "stock": 1, "partner_id": partner}]});
        let reply = app.post("/products/batch", Some(&admin), &body).await;
        assert_eq!(
            int(&array(expect(&reply, 201), "products")[0], "partner_id"),
            partner
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    only_sellers_for_their_own_partner_and_admins_may_list,
    |app| async move {
        let partner = app.create_partner("Own", 1000).await;
        let other = app.create_partner("Other", 1000).await;
        let seller = app.create_seller(partner).await;
        let buyer = app.buyer().await;
        let body = json!({"products": [item("Mug", 9_000, 3)]});
        let reply = app.post("/products/batch", None, &body).await;
        expect_error(&reply, 401, "unauthorized");
        let reply = app.post("/products/batch", Some(&buyer), &body).await;
        expect_error(&reply, 403, "forbidden");
        // One item for another partner refuses the whole request, the valid one included.
        let mixed = json!({"products": [
            item("Mine", 9_000, 3),
            {"name": "Theirs", "price": 9_000, "stock": 3, "partner_id": other},
        ]});
        let reply = app.post("/products/batch", Some(&seller), &mixed).await;
        expect_error(&reply, 403, "forbidden");
        assert_eq!(count(&app, "products").await, 0);
        assert_eq!(count(&app, "stock_movements").await, 0);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    invalid_items_are_reported_by_index_and_nothing_is_created,
    |app| async move {
        let partner = app.create_partner("Atelier", 1000).await;
        let seller = app.create_seller(partner).await;
        let events_before = count(&app, "outbox").await;
        let body = json!({"products": [
            item("Fine", 1_000, 1),
            item("   ", 1_000, 1),
            item("Fine too", 1_000, 0),
            item("Too many", 1_000, 1_000_001),
            {"name": "No limit", "price": 1_000, "stock": 1, "max_per_user": 0},
            item("Negative", -1, 1),
        ]});
        let reply = app.post("/products/batch", Some(&seller), &body).await;
        expect_error(&reply, 422, "batch_invalid");
        let items = array(&reply.1["error"], "items");
        let found: Vec<(i64, &str)> = items
            .iter()
            .map(|i| (int(i, "index"), str_of(i, "field")))
            .collect();
        assert_eq!(
            found,
            [(1, "name"), (3, "stock"), (4, "max_per_user"), (5, "price")]
        );
        assert!(items.iter().all(|i| !str_of(i, "message").is_empty()));
        // All or nothing: the valid items 0 and 2 were not created either.
        assert_eq!(count(&app, "products").await, 0);
        assert_eq!(count(&app, "outbox").await, events_before);

        // An admin's items must name a partner, and one that exists.
        let admin = app.admin_token().await;
        let body = json!({"products": [
            {"name": "Known", "price": 1, "stock": 1, "partner_id": partner},
            item("Nobody's", 1, 1),
            {"name": "Unknown", "price": 1, "stock": 1, "partner_id": partner + 1_000},
        ]});
        let reply = app.post("/products/batch", Some(&admin), &body).await;
        expect_error(&reply, 422, "batch_invalid");
        let items = array(&reply.1["error"], "items");
        let found: Vec<(i64, &str)> = items
            .iter()
            .map(|i| (int(i, "index"), str_of(i, "message")))
            .collect();
        assert_eq!(
            found,
            [
                (1, "partner_id: is required for admins"),
                (2, "partner_id: no such partner")
            ]
        );
        assert_eq!(count(&app, "products").await, 0);

        // Empty, or not a list of products: refused as a whole.
        let reply = app
            .post("/products/batch", Some(&seller), &json!({"products": []}))
            .await;
        expect_error(&reply, 422, "validation_failed");
        let reply = app
            .post(
                "/products/batch",
                Some(&seller),
                &json!({"products": [{"name": "x"}]}),
            )
            .await;
        assert!(matches!(reply.0.as_u16(), 400 | 422), "{reply:?}");
        assert_eq!(count(&app, "products").await, 0);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_batch_above_its_limit_is_refused_whole,
    config = |c| {
        c.catalog_batch_max = 3;
        c.catalog_batch_body_limit_bytes = 4096;
    },
    |app| async move {
        let partner = app.create_partner("Atelier", 1000).await;
        let seller = app.create_seller(partner).await;
        let four: Vec<Value> = (0..4).map(|i| item(&format!("p{i}"), 100, 1)).collect();
        let reply = app
            .post("/products/batch", Some(&seller), &json!({"products": four}))
            .await;
        expect_error(&reply, 422, "batch_too_large");
        assert_eq!(count(&app, "products").await, 0);
        let three = &four[..3];
        let reply = app
            .post(
                "/products/batch",
                Some(&seller),
                &json!({"products": three}),
            )
            .await;
        assert_eq!(array(expect(&reply, 201), "products").len(), 3);
        // The batch's own body limit: 413 above it, nothing created.
        let big: Vec<Value> = (0..3).map(|_| item(&"x".repeat(200), 100, 1)).collect();
        let body = json!({"products": big, "padding": "y".repeat(4096)});
        let reply = app.post("/products/batch", Some(&seller), &body).await;
        expect_error(&reply, 413, "payload_too_large");
        assert_eq!(count(&app, "products").await, 3);
        app.assert_verify_clean().await;
    }
);

backend_tests!(a_full_batch_fits_the_default_limits, |app| async move {
    // 1,000 products with long names: far above the 64 KiB every other route accepts.
    let partner = app.create_partner("Warehouse", 1000).await;
    let seller = app.create_seller(partner).await;
    let products: Vec<Value> = (0..1_000)
        .map(|i| item(&format!("{i:04} {}", "n".repeat(150)), 1_000 + i, i % 3))
        .collect();
    let body = json!({ "products": products });
    assert!(body.to_string().len() > 64 * 1024);
    let reply = app.post("/products/batch", Some(&seller), &body).await;
    let created = array(expect(&reply, 201), "products");
    assert_eq!(created.len(), 1_000);
    for (i, product) in created.iter().enumerate() {
        assert!(str_of(product, "name").starts_with(&format!("{i:04} ")));
    }
    let too_many =
        json!({"products": (0..1_001).map(|i| item(&format!("p{i}"), 1, 1)).collect::<Vec<_>>()});
    let reply = app.post("/products/batch", Some(&seller), &too_many).await;
    expect_error(&reply, 422, "batch_too_large");
    assert_eq!(count(&app, "products").await, 1_000);
    assert_eq!(count(&app, "stock_movements").await, 666);
    app.assert_verify_clean().await;
});
