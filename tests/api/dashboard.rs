//! The operations page's data (`GET /api/v1/admin/dashboard`, issue 13): admins only; the
//! products in play with their stock and units sold, the order funnel and refusals summed
//! over every node alive, coupon campaigns, the order endpoint's latency histogram, the nodes
//! and the health of what they depend on. Also the bounded stock gauges of `/metrics`.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn dashboard(node: &TestApp, admin: &str) -> Value {
    expect(&node.get("/admin/dashboard", Some(admin)).await, 200).clone()
}

fn in_play(dashboard: &Value, id: i64) -> Option<&Value> {
    let products = dashboard["products"].as_array()?;
    products.iter().find(|p| p["id"] == id)
}

/// 8 buyers at once for 5 units: 5 placed, 3 refused as out of stock.
async fn small_drop(app: &TestApp) -> i64 {
    let product = app.simple_product(10_000, 5).await;
    let buyers: Vec<Arc<String>> = app.buyers(8).await.into_iter().map(Arc::new).collect();
    let statuses = all_at_once(buyers.len(), |i| {
        let (app, buyer) = (app.clone(), buyers[i].clone());
        async move { app.place_order(&buyer, &[(product, 1)]).await.0.as_u16() }
    })
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    product
}

backend_tests!(only_admins_see_the_dashboard, |app| async move {
    let buyer = app.buyers(1).await.remove(0);
    expect_error(
        &app.get("/admin/dashboard", None).await,
        401,
        "unauthorized",
    );
    let reply = app.get("/admin/dashboard", Some(&buyer)).await;
    expect_error(&reply, 403, "forbidden");
    let partner = app.create_partner("North", 1_000).await;
    let seller = app.create_seller(partner).await;
    expect_error(
        &app.get("/admin/dashboard", Some(&seller)).await,
        403,
        "forbidden",
    );
});

// A small drop, seen on the page: the product sold out with every unit counted, the funnel
// and the refusals, the campaign's progress, the order endpoint's latency, this node alive
// and its database up.
backend_tests!(the_dashboard_shows_a_drop, |app| async move {
    let admin = app.admin_token().await;
    let body = json!({"name": "Drop coupon", "discount_type": "fixed", "discount_value": 1_000, "total_quantity": 7});
    let campaign = int(
        expect(&app.post("/coupons", Some(&admin), &body).await, 201),
        "id",
    );
    let product = small_drop(&app).await;

    // Counters come with the next heartbeat (every second).
    let seen = eventually(Duration::from_secs(10), "the drop on the page", || async {
        let seen = dashboard(&app, &admin).await;
        (seen["orders"]["placed"].as_u64() >= Some(5)).then_some(seen)
    })
    .await;
    let p = in_play(&seen, product).expect("the product is in play");
    assert_eq!(
        (
            int(p, "on_hand"),
            int(p, "held"),
            int(p, "available"),
            int(p, "sold")
        ),
        (5, 5, 0, 5),
        "{p}"
    );
    let orders = &seen["orders"];
    assert_eq!(orders["placed"], 5, "{orders}");
    assert_eq!(orders["attempted"], 8, "{orders}");
    assert_eq!(orders["refused"]["out_of_stock"], 3, "{orders}");
    assert_eq!(orders["paid"], 0, "{orders}");
    let c = seen["coupons"].as_array().unwrap();
    let c = c
        .iter()
        .find(|c| c["id"] == campaign)
        .expect("the campaign");
    assert_eq!((int(c, "issued"), int(c, "total")), (0, 7), "{c}");
    let latency = &seen["latency"];
    assert_eq!(latency["count"], 8, "every attempt timed: {latency}");
    let buckets = latency["buckets"].as_array().unwrap();
    let last = buckets.last().unwrap();
    assert!(
        last["le"].is_null() && last["count"] == 8,
        "+Inf last: {latency}"
    );
    let bounds: Vec<f64> = buckets.iter().filter_map(|b| b["le"].as_f64()).collect();
    assert!(
        bounds.windows(2).all(|w| w[0] < w[1]),
        "ascending: {bounds:?}"
    );
    let nodes = seen["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["alive"], true);
    assert_eq!(nodes[0]["draining"], false);
    assert_eq!(seen["health"]["database"], "up");
    assert_eq!(seen["health"]["broker"], "off", "no broker configured");
    assert_eq!(seen["waiting_room"]["waiting"], 0);

    // Sold out, as the page says.
    let buyer = app.buyers(1).await.remove(0);
    let placed = app.place_order(&buyer, &[(product, 1)]).await;
    expect_error(&placed, 409, "out_of_stock");
});

// Every node alive is summed: orders placed on a second node count too, and both nodes
// are listed; a stopped node is no longer alive once its heartbeat is 10 s old.
backend_tests!(the_dashboard_sums_every_node_alive, |app| async move {
    let admin = app.admin_token().await;
    let (other, other_node) = app.another_node(|_| {}).await;
    let product = app.simple_product(10_000, 10).await;
    let buyers = app.buyers(3).await;
    expect(&app.place_order(&buyers[0], &[(product, 1)]).await, 201);
    expect(&other.place_order(&buyers[1], &[(product, 2)]).await, 201);
    expect(&other.place_order(&buyers[2], &[(product, 1)]).await, 201);
    let seen = eventually(Duration::from_secs(10), "both nodes counted", || async {
        let seen = dashboard(&app, &admin).await;
        (seen["orders"]["placed"] == 3).then_some(seen)
    })
    .await;
    let alive = seen["nodes"].as_array().unwrap();
    assert_eq!(
        alive.iter().filter(|n| n["alive"] == true).count(),
        2,
        "{alive:?}"
    );
    let p = in_play(&seen, product).unwrap();
    assert_eq!((int(p, "sold"), int(p, "available")), (4, 6), "{p}");
    // The other node answers the same.
    let there = eventually(Duration::from_secs(5), "the other node's view", || async {
        let there = dashboard(&other, &admin).await;
        (there["orders"]["placed"] == 3).then_some(there)
    })
    .await;
    assert_eq!(there["nodes"].as_array().unwrap().len(), 2);
    other_node.stop().await;
    app.clock.advance(Duration::from_secs(11));
    let after = eventually(Duration::from_secs(10), "the stopped node gone", || async {
        let after = dashboard(&app, &admin).await;
        let nodes = after["nodes"].as_array()?.clone();
        (nodes.iter().filter(|n| n["alive"] == true).count() == 1).then_some(after)
    })
    .await;
    assert_eq!(
        after["orders"]["placed"], 1,
        "only what the node alive counted"
    );
});

// The stock gauges cover the products in play only, and `/metrics` carries the funnel,
// the job runs and the database's health.
backend_tests!(stock_gauges_cover_products_in_play, |app| async move {
    let old = app.simple_product(10_000, 3).await;
    // Released two days ago, never moved since: out of play.
    execute_sql(
        &app,
        &format!("UPDATE products SET release_at = release_at - 172800000 WHERE id = {old}"),
    )
    .await;
    execute_sql(
        &app,
        &format!(
        "UPDATE stock_movements SET created_at = created_at - 172800000 WHERE product_id = {old}"
    ),
    )
    .await;
    let product = small_drop(&app).await;
    let available = format!("stock_available{{product_id=\"{product}\"}}");
    let sold = format!("stock_sold{{product_id=\"{product}\"}}");
    eventually(Duration::from_secs(15), "the gauges", || async {
        (app.metric(&sold).await == 5.0).then_some(())
    })
    .await;
    assert_eq!(app.metric(&available).await, 0.0);
    let text = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    assert!(
        !text.contains(&format!("product_id=\"{old}\"")),
        "a product out of play has no series"
    );
    assert_eq!(app.metric("orders_attempted_total").await, 8.0);
    assert_eq!(
        app.metric("orders_rejected_total{reason=\"out_of_stock\"}")
            .await,
        3.0
    );
    assert!(
        app.metric("job_runs_total{job_name=\"heartbeat\",outcome=\"ok\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        app.metric("dependency_up{dependency=\"database\"}").await,
        1.0
    );
    assert!(app.metric("nodes_alive").await >= 1.0);
});
