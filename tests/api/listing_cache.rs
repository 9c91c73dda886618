//! `GET /products` and `GET /products/{id}` are cached, and current after every change:
//! product created, product updated, inbound, order placed (once its event is dispatched)
//! and cancelled. Run in process and, when the run has Redis, through Redis, where a second
//! node must see the first node's changes at once.

use crate::helpers::*;
use serde_json::{json, Value};

/// Each read is made twice: the first may fill the cache, the second must be a hit and
/// must say the same.
async fn product_twice(app: &TestApp, id: i64) -> Value {
    let first = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();
    let second = expect(&app.get(&format!("/products/{id}"), None).await, 200).clone();
    assert_eq!(
        first, second,
        "a cached read differs from the read before it"
    );
    second
}

async fn listing_twice(app: &TestApp) -> Value {
    let first = expect(&app.get("/products?page=1&size=10", None).await, 200).clone();
    let second = expect(&app.get("/products?page=1&size=10", None).await, 200).clone();
    assert_eq!(
        first, second,
        "a cached page differs from the read before it"
    );
    second
}

fn ids(page: &Value) -> Vec<i64> {
    array(page, "items").iter().map(|p| int(p, "id")).collect()
}

#[track_caller]
fn assert_levels(product: &Value, on_hand: i64, held: i64) {
    assert_eq!(
        (
            int(product, "on_hand"),
            int(product, "held"),
            int(product, "available")
        ),
        (on_hand, held, on_hand - held),
        "{product}"
    );
}

/// Every change, read back through `reader` (this node or another one).
async fn stays_current(app: &TestApp, reader: &TestApp) {
    let admin = app.admin_token().await;
    let partner = app.create_partner("Listed", 1000).await;
    let late = app.product_of(partner, 5_000, 10, None).await;
    assert_eq!(ids(&listing_twice(reader).await), [late]);
    assert_levels(&product_twice(reader, late).await, 10, 0);
    let hits = reader.state.metrics.cache_hits.get();

    // Created: an earlier release sorts first, and the total counts it.
    let body = json!({"name": "Early", "price": 7_000, "stock": 2, "partner_id": partner,
                      "release_at": "2020-01-01T00:00:00Z"});
    let early = int(&app.create_product(&admin, &body).await, "id");
    let page = listing_twice(reader).await;
    assert_eq!((ids(&page), int(&page, "total")), (vec![early, late], 2));

    // Updated: name, price and the order of the listing.
    let patch =
        json!({"name": "Late, renamed", "price": 6_000, "release_at": "2019-01-01T00:00:00Z"});
    expect(
        &app.patch(&format!("/products/{late}"), Some(&admin), &patch)
            .await,
        200,
    );
    let page = listing_twice(reader).await;
    assert_eq!(ids(&page), [late, early]);
    assert_eq!(array(&page, "items")[0]["name"], "Late, renamed");
    let product = product_twice(reader, late).await;
    assert_eq!(
        (product["name"].clone(), int(&product, "price")),
        (json!("Late, renamed"), 6_000)
    );

    // Inbound.
    let path = format!("/products/{late}/inbound");
    expect(
        &app.post(&path, Some(&admin), &json!({"quantity": 5})).await,
        200,
    );
    assert_levels(&product_twice(reader, late).await, 15, 0);
    assert_levels(&array(&listing_twice(reader).await, "items")[0], 15, 0);

    // An order holds 3 units: current once its event is dispatched (placement answers
    // before that, to keep the hot path short).
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(late, 3)]).await;
    app.state.events.caught_up().await;
    reader.state.events.caught_up().await;
    assert_levels(&product_twice(reader, late).await, 15, 3);
    assert_levels(&array(&listing_twice(reader).await, "items")[0], 15, 3);

    // Cancelled: the handler waits for its events, so the next read is current.
    expect(&app.cancel(&buyer, int(&order, "id")).await, 200);
    reader.state.events.caught_up().await;
    assert_levels(&product_twice(reader, late).await, 15, 0);
    assert_levels(&array(&listing_twice(reader).await, "items")[0], 15, 0);

    assert!(
        reader.state.metrics.cache_hits.get() >= hits + 10,
        "the reads were not served from the cache"
    );
}

backend_tests!(listing_is_current_after_every_change, |app| async move {
    stays_current(&app, &app).await;
});

redis_tests!(
    listing_is_current_after_every_change_through_redis,
    |app| async move {
        stays_current(&app, &app).await;
    }
);

redis_tests!(
    another_node_reads_the_changes_at_once_through_redis,
    config = |c| {
        // The other node's own dispatcher is woken through Redis but runs on its own time;
        // the writer's response waits only for the writer's dispatcher. The shared
        // generation and stock levels are what make the other node current at once.
        c.outbox_poll_ms = 30_000;
    },
    |app| async move {
        let (other, node) = app.another_node(|_| {}).await;
        let admin = app.admin_token().await;
        let product = app.simple_product(1_000, 4).await;
        assert_eq!(product_twice(&other, product).await["price"], 1_000);
        let patch = json!({"price": 2_000});
        expect(
            &app.patch(&format!("/products/{product}"), Some(&admin), &patch)
                .await,
            200,
        );
        assert_eq!(product_twice(&other, product).await["price"], 2_000);
        let path = format!("/products/{product}/inbound");
        expect(
            &app.post(&path, Some(&admin), &json!({"quantity": 1})).await,
            200,
        );
        assert_levels(&product_twice(&other, product).await, 5, 0);
        node.stop().await;
    }
);
