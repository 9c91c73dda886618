//! Waitlists (issue 3, item 5): buyers queue for a sold-out product; units that come back
//! are offered down the line as held orders with their own payment deadline; an offer that
//! lapses passes to the next. Offers are made once per entry, whatever the number of nodes.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Generous: two shared cores run the whole suite at once.
const WITHIN: Duration = Duration::from_secs(15);
/// The offer deadline of the tests that let offers lapse (by moving the servers' clock).
const OFFER_TTL_SECS: u64 = 300;

async fn join(app: &TestApp, token: &str, product: i64, body: Option<Value>) -> Reply {
    let path = format!("/products/{product}/waitlist");
    app.send(Method::POST, &path, Some(token), None, body.as_ref())
        .await
}

async fn leave(app: &TestApp, token: &str, product: i64) -> Reply {
    let path = format!("/products/{product}/waitlist");
    app.send(Method::DELETE, &path, Some(token), None, None)
        .await
}

/// The caller's newest entry for `product`.
async fn entry(app: &TestApp, token: &str, product: i64) -> Value {
    let reply = app.get("/me/waitlist?size=100", Some(token)).await;
    array(expect(&reply, 200), "items")
        .iter()
        .find(|e| e["product_id"] == product)
        .cloned()
        .unwrap_or_else(|| panic!("no waitlist entry for product {product}: {}", reply.1))
}

/// Waits until the caller's entry for `product` has `status`; returns it.
async fn entry_with_status(app: &TestApp, token: &str, product: i64, status: &str) -> Value {
    eventually(WITHIN, &format!("a waitlist entry {status}"), || async {
        let e = entry(app, token, product).await;
        (e["status"] == status).then_some(e)
    })
    .await
}

/// Opens `GET /me/events` and reads its `ready` event: from here on nothing is missed.
pub(crate) async fn my_events(app: &TestApp, token: &str) -> SseReader {
    let response = app
        .client
        .get(app.api("/me/events"))
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("open /me/events");
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = SseReader::new(response);
    let ready = stream.next_event(WITHIN).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    stream
}

/// The next event of type `kind` on `user`'s own stream, skipping others; every event
/// read on the way must be about `user`.
pub(crate) async fn next_of_type(stream: &mut SseReader, user: i64, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {kind} event within {WITHIN:?}");
        let event = stream.next_event(left).await;
        assert_eq!(
            event["payload"]["user_id"], user,
            "another user's event on the stream: {event}"
        );
        if event["type"] == kind {
            return event;
        }
    }
}

/// Outbox events of `kind` about `product`'s waitlist, as payloads.
async fn waitlist_events(app: &TestApp, kind: &str, product: i64) -> Vec<Value> {
    let events = app.state.store.events_after(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event_type == kind)
        .map(|e| serde_json::from_str::<Value>(&e.payload).unwrap())
        .filter(|p| p["product_id"] == product)
        .collect()
}

fn seconds_between(later: &Value, later_key: &str, earlier: &Value, earlier_key: &str) -> f64 {
    (parse_time(later, later_key) - parse_time(earlier, earlier_key)).as_seconds_f64()
}

backend_tests!(joining_and_leaving_a_waitlist, |app| async move {
    let partner = app.create_partner(&unique("partner"), 1000).await;
    let product = app.product_of(partner, 10_000, 0, None).await;
    let limited = app.product_of(partner, 10_000, 0, Some(2)).await;
    let (b1, b2, b3) = (app.buyer().await, app.buyer().await, app.buyer().await);

    let first = join(&app, &b1, product, None).await;
    let first = expect(&first, 201);
    assert_eq!(
        (
            int(first, "product_id"),
            int(first, "position"),
            int(first, "quantity")
        ),
        (product, 1, 1),
        "{first}"
    );
    assert_eq!(first["status"], "waiting");
    assert!(first["order_id"].is_null());
    parse_time(first, "joined_at");
    let second = join(&app, &b2, product, Some(json!({"quantity": 3}))).await;
    let second = expect(&second, 201);
    assert_eq!((int(second, "position"), int(second, "quantity")), (2, 3));

    // Once per buyer; known products only; quantities within the limit; buyers only.
    expect_error(
        &join(&app, &b1, product, Some(json!({}))).await,
        409,
        "already_waitlisted",
    );
    expect_error(&join(&app, &b1, 999_999_999, None).await, 404, "not_found");
    for quantity in [0, 3] {
        let reply = join(&app, &b3, limited, Some(json!({ "quantity": quantity }))).await;
        expect_error(&reply, 422, "validation_failed");
    }
    let over = join(&app, &b3, product, Some(json!({"quantity": 101}))).await;
    expect_error(&over, 422, "validation_failed");
    let typo = join(&app, &b3, product, Some(json!({"quantiy": 1}))).await;
    expect_error(&typo, 422, "validation_failed");
    expect(
        &join(&app, &b3, limited, Some(json!({"quantity": 2}))).await,
        201,
    );
    let admin = app.admin_token().await;
    expect_error(&join(&app, &admin, product, None).await, 403, "forbidden");
    let anonymous = app
        .send(
            Method::POST,
            &format!("/products/{product}/waitlist"),
            None,
            None,
            None,
        )
        .await;
    expect_error(&anonymous, 401, "unauthorized");

    // Leaving moves the line up; leaving twice, or a line one is not in, is 404.
    expect(&leave(&app, &b1, product).await, 204);
    expect_error(&leave(&app, &b1, product).await, 404, "not_found");
    expect_error(&leave(&app, &b1, limited).await, 404, "not_found");
    let moved_up = entry(&app, &b2, product).await;
    assert_eq!(int(&moved_up, "position"), 1, "{moved_up}");
    let left = entry(&app, &b1, product).await;
    assert_eq!(left["status"], "left");
    assert!(left["position"].is_null(), "{left}");

    // A buyer who left may queue again, at the end of the line.
    let again = join(&app, &b1, product, None).await;
    assert_eq!(int(expect(&again, 201), "position"), 2);
    let mine = app.get("/me/waitlist", Some(&b1)).await;
    let mine = expect(&mine, 200);
    assert_eq!(int(mine, "total"), 2, "{mine}");
    let statuses: Vec<&Value> = array(mine, "items").iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses, ["waiting", "left"], "newest first: {mine}");

    let joined = waitlist_events(&app, "waitlist.joined", product).await;
    let left = waitlist_events(&app, "waitlist.left", product).await;
    assert_eq!((joined.len(), left.len()), (3, 1));
    assert_eq!(left[0]["user_id"], app.user_id(&b1).await);
    app.assert_verify_clean().await;
});

backend_tests!(
    a_returned_unit_passes_down_the_line,
    config = |c| {
        c.waitlist_offer_ttl_secs = OFFER_TTL_SECS;
        c.sweeper_interval_ms = 100;
    },
    |app| async move {
        let product = app.simple_product(10_000, 1).await;
        let (a, b, c) = (app.buyer().await, app.buyer().await, app.buyer().await);
        let (b_id, c_id) = (app.user_id(&b).await, app.user_id(&c).await);
        let held = app.order_ok(&a, &[(product, 1)]).await;
        expect_error(
            &app.place_order(&b, &[(product, 1)]).await,
            409,
            "out_of_stock",
        );
        expect(&join(&app, &b, product, None).await, 201);
        expect(&join(&app, &c, product, None).await, 201);
        let mut b_stream = my_events(&app, &b).await;
        let mut c_stream = my_events(&app, &c).await;

        // A cancels: the unit is offered to B, as an order of B's with the offer deadline.
        expect(&app.cancel(&a, int(&held, "id")).await, 200);
        let placed = next_of_type(&mut b_stream, b_id, "order.placed").await;
        let offered = next_of_type(&mut b_stream, b_id, "waitlist.offered").await;
        let offer = &offered["payload"];
        assert_eq!(
            (int(offer, "product_id"), int(offer, "user_id")),
            (product, b_id),
            "{offered}"
        );
        let b_order_id = int(offer, "order_id");
        assert_eq!(placed["payload"]["order_id"], b_order_id);
        let b_order = app.order(&b, b_order_id).await;
        assert_eq!(int(&b_order, "user_id"), b_id);
        assert_eq!(b_order["status"], "pending_payment");
        assert_eq!(b_order["pay_by"], offer["pay_by"]);
        let ttl = seconds_between(&b_order, "pay_by", &b_order, "created_at");
        let expected = OFFER_TTL_SECS as f64;
        assert!(
            (ttl - expected).abs() < 0.01,
            "pay_by is created_at + {ttl} s"
        );
        let items = array(&b_order["partner_orders"][0], "items");
        assert_eq!(
            (int(&items[0], "product_id"), int(&items[0], "quantity")),
            (product, 1)
        );
        let b_entry = entry(&app, &b, product).await;
        assert_eq!(b_entry["status"], "offered");
        assert_eq!(int(&b_entry, "order_id"), b_order_id);
        let c_entry = entry(&app, &c, product).await;
        assert_eq!(
            (c_entry["status"].clone(), int(&c_entry, "position")),
            (json!("waiting"), 1)
        );

        // B does not pay: the offer lapses and passes to C.
        app.clock.advance(Duration::from_secs(OFFER_TTL_SECS + 1));
        let expired = next_of_type(&mut b_stream, b_id, "order.expired").await;
        assert_eq!(expired["payload"]["order_id"], b_order_id);
        let lapsed = next_of_type(&mut b_stream, b_id, "waitlist.lapsed").await;
        assert_eq!(lapsed["payload"]["order_id"], b_order_id);
        let offered = next_of_type(&mut c_stream, c_id, "waitlist.offered").await;
        let c_order_id = int(&offered["payload"], "order_id");
        assert_eq!(int(&offered["payload"], "user_id"), c_id);
        let paid = app
            .pay(&c, &json!({"id": c_order_id, "payable": 10_000}))
            .await;
        assert_eq!(expect(&paid, 200)["status"], "paid");
        next_of_type(&mut c_stream, c_id, "waitlist.fulfilled").await;

        let b_entry = entry(&app, &b, product).await;
        assert_eq!(
            (b_entry["status"].clone(), int(&b_entry, "order_id")),
            (json!("lapsed"), b_order_id)
        );
        let c_entry = entry_with_status(&app, &c, product, "fulfilled").await;
        assert_eq!(int(&c_entry, "order_id"), c_order_id);
        let b_order = app.order(&b, b_order_id).await;
        assert_eq!(
            (b_order["status"].clone(), b_order["cancel_reason"].clone()),
            (json!("cancelled"), json!("expired"))
        );
        assert_eq!(
            (app.order_count(&b).await, app.order_count(&c).await),
            (1, 1)
        );

        let stock = app.stock(product).await;
        assert_eq!((stock.on_hand, stock.held, stock.available), (0, 0, 0));
        let kinds = app.movements(product).await;
        let count = |kind: &str| kinds.iter().filter(|m| m["kind"] == kind).count();
        assert_eq!(
            (
                count("inbound"),
                count("hold"),
                count("release"),
                count("commit")
            ),
            (1, 3, 2, 1),
            "A held and released, B held and released, C held and paid: {kinds:?}"
        );
        assert_eq!(
            waitlist_events(&app, "waitlist.offered", product)
                .await
                .len(),
            2
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(inbound_is_offered_to_the_first_in_line, |app| async move {
    let product = app.simple_product(5_000, 0).await;
    let buyers = app.buyers(3).await;
    for (i, buyer) in buyers.iter().enumerate() {
        let joined = join(&app, buyer, product, None).await;
        assert_eq!(int(expect(&joined, 201), "position"), i as i64 + 1);
    }
    let admin = app.admin_token().await;
    let inbound = app
        .post(
            &format!("/products/{product}/inbound"),
            Some(&admin),
            &json!({"quantity": 2}),
        )
        .await;
    expect(&inbound, 200);

    for buyer in &buyers[..2] {
        let offered = entry_with_status(&app, buyer, product, "offered").await;
        let order = app.order(buyer, int(&offered, "order_id")).await;
        assert_eq!(order["status"], "pending_payment");
        assert_eq!(app.order_count(buyer).await, 1);
    }
    // Nothing is left for the third: still waiting, now first in line, and no order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = entry(&app, &buyers[2], product).await;
    assert_eq!(
        (third["status"].clone(), int(&third, "position")),
        (json!("waiting"), 1),
        "{third}"
    );
    assert_eq!(app.order_count(&buyers[2]).await, 0);
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.held, stock.available), (2, 2, 0));
    app.assert_verify_clean().await;

    // `verify` notices an offer that points at someone else's order.
    let first_order = int(&entry(&app, &buyers[0], product).await, "order_id");
    let tampered = format!(
        "UPDATE waitlist_entries SET status = 'offered', order_id = {first_order} WHERE id = {}",
        int(&third, "id")
    );
    execute_sql(&app, &tampered).await;
    let report = stampede::app::audit::run(&*app.state.store).await.unwrap();
    let problems = report.problems.join("\n");
    assert!(
        problems.contains(&format!("waitlist entry {}", int(&third, "id"))),
        "{problems}"
    );
});

backend_tests!(
    a_buyer_over_the_purchase_limit_is_skipped,
    |app| async move {
        let partner = app.create_partner(&unique("partner"), 1000).await;
        let product = app.product_of(partner, 5_000, 2, Some(1)).await;
        let (holder, other, next) = (app.buyer().await, app.buyer().await, app.buyer().await);
        app.order_ok(&holder, &[(product, 1)]).await;
        let other_order = app.order_ok(&other, &[(product, 1)]).await;
        // `holder` already holds the one unit it may buy, yet queues first.
        expect(&join(&app, &holder, product, None).await, 201);
        expect(&join(&app, &next, product, None).await, 201);

        expect(&app.cancel(&other, int(&other_order, "id")).await, 200);
        let offered = entry_with_status(&app, &next, product, "offered").await;
        assert!(offered["order_id"].is_i64());
        let skipped = entry(&app, &holder, product).await;
        assert_eq!(skipped["status"], "skipped", "{skipped}");
        assert!(skipped["order_id"].is_null());
        let events = waitlist_events(&app, "waitlist.skipped", product).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], "purchase_limit");
        assert_eq!(
            app.order_count(&holder).await,
            1,
            "no second order for the holder"
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    two_nodes_make_each_offer_once,
    config = |c| {
        // Both nodes' safety-net passes race each other as well as their event wake-ups.
        c.waitlist_interval_ms = 20;
        c.outbox_poll_ms = 20;
    },
    |app| async move {
        const WAITING: usize = 12;
        let (other, node) = app.another_node(|_| {}).await;
        let product = app.simple_product(5_000, 0).await;
        let buyers = app.buyers(WAITING).await;
        for buyer in &buyers {
            expect(&join(&app, buyer, product, None).await, 201);
        }
        let admin = app.admin_token().await;
        let path = format!("/products/{product}/inbound");
        let body = json!({"quantity": 3});
        let (first, second) = tokio::join!(
            app.post(&path, Some(&admin), &body),
            other.post(&path, Some(&admin), &body)
        );
        expect(&first, 200);
        expect(&second, 200);

        let mut offers = Vec::new();
        for buyer in &buyers[..6] {
            let offered = entry_with_status(&app, buyer, product, "offered").await;
            offers.push(int(&offered, "order_id"));
        }
        // Two offers lapse, cancelled on different nodes: the next two in line get them.
        expect(&app.cancel(&buyers[0], offers[0]).await, 200);
        expect(&other.cancel(&buyers[1], offers[1]).await, 200);
        for buyer in &buyers[6..8] {
            entry_with_status(&app, buyer, product, "offered").await;
        }
        entry_with_status(&app, &buyers[0], product, "lapsed").await;
        entry_with_status(&app, &buyers[1], product, "lapsed").await;
        // Let both workers run a few more passes over the settled line.
        tokio::time::sleep(Duration::from_millis(500)).await;

        for (i, buyer) in buyers.iter().enumerate() {
            let expected = if i < 8 { 1 } else { 0 };
            assert_eq!(
                app.order_count(buyer).await,
                expected,
                "orders of buyer {i}"
            );
        }
        for buyer in &buyers[8..] {
            assert_eq!(entry(&app, buyer, product).await["status"], "waiting");
        }
        let offered = waitlist_events(&app, "waitlist.offered", product).await;
        let entries: BTreeSet<i64> = offered.iter().map(|e| int(e, "entry_id")).collect();
        assert_eq!(
            (offered.len(), entries.len()),
            (8, 8),
            "one waitlist.offered per entry: {offered:?}"
        );
        assert_eq!(
            waitlist_events(&app, "waitlist.lapsed", product)
                .await
                .len(),
            2
        );
        let stock = app.stock(product).await;
        assert_eq!((stock.on_hand, stock.held, stock.available), (6, 6, 0));
        app.assert_verify_clean().await;
        node.stop().await;
    }
);

backend_tests!(a_buyer_stream_ends_on_shutdown, |app| async move {
    let (other, node) = app.another_node(|_| {}).await;
    let buyer = app.buyer().await;
    let mut response = other
        .client
        .get(other.api("/me/events"))
        .bearer_auth(&buyer)
        .send()
        .await
        .expect("open /me/events");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.chunk().await.unwrap().is_some(),
        "the stream opens with `ready`"
    );
    let stopping = tokio::spawn(node.stop());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the buyer's stream ends on shutdown");
    stopping.await.expect("the node stops");
});

backend_tests!(
    a_line_waits_for_the_release,
    config = |c| c.waitlist_interval_ms = 100,
    |app| async move {
        let partner = app.create_partner(&unique("partner"), 1000).await;
        let admin = app.admin_token().await;
        // Ten minutes: within the life of the test's access tokens.
        let release_at = app.state.clock.now().plus_secs(600);
        let body = json!({
            "name": unique("product"), "price": 5_000, "stock": 0, "partner_id": partner,
            "release_at": release_at.to_rfc3339(),
        });
        let product = int(&app.create_product(&admin, &body).await, "id");
        let buyer = app.buyer().await;
        expect(&join(&app, &buyer, product, None).await, 201);
        let inbound = app
            .post(
                &format!("/products/{product}/inbound"),
                Some(&admin),
                &json!({"quantity": 1}),
            )
            .await;
        expect(&inbound, 200);

        // Not released: nobody in line is passed over, and nothing is offered yet.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(entry(&app, &buyer, product).await["status"], "waiting");
        assert!(app.state.clock.now() < release_at, "test too slow");
        // The release comes: the line is served.
        app.clock.advance(Duration::from_secs(600));
        let offered = entry_with_status(&app, &buyer, product, "offered").await;
        let order = app.order(&buyer, int(&offered, "order_id")).await;
        assert!(parse_time(&order, "created_at") >= parse_time(&body, "release_at"));
        app.assert_verify_clean().await;
    }
);
