//! Fulfilment (issue 10): a partner's sellers and admins move its partner orders `paid →
//! preparing → shipped → delivered` through `POST /partner-orders/{id}/prepare|ship|
//! deliver` and list them with `GET /partners/{id}/orders`; the buyer follows on the order
//! and its live streams, and confirms the purchase once every part is delivered — or the
//! sweeper does, `auto_confirm_after_secs` after the last delivery.

use crate::helpers::*;
use crate::points::metric;
use crate::waitlist::{my_events, next_of_type};
use serde_json::{json, Value};
use stampede::clock::Clock;
use std::time::Duration;

const SSE_WAIT: Duration = Duration::from_secs(10);
/// Ten minutes: the test moves the servers' clock past it instead of waiting.
const AUTO_CONFIRM_AFTER_SECS: u64 = 600;

/// Two partners, a product and a seller each.
struct Shop {
    north: i64,
    south: i64,
    north_seller: String,
    south_seller: String,
    boots: i64,
    coats: i64,
}

async fn shop(app: &TestApp) -> Shop {
    let north = app.create_partner("North", 1000).await;
    let south = app.create_partner("South", 500).await;
    Shop {
        north,
        south,
        north_seller: app.create_seller(north).await,
        south_seller: app.create_seller(south).await,
        boots: app.product_of(north, 1_000, 50, None).await,
        coats: app.product_of(south, 2_000, 50, None).await,
    }
}

/// A new buyer's paid order of one pair of boots (North) and two coats (South); returns
/// the buyer and the order as the pay reply showed it.
async fn paid_order(app: &TestApp, shop: &Shop) -> (String, Value) {
    let buyer = app.buyer().await;
    let order = app
        .order_ok(&buyer, &[(shop.boots, 1), (shop.coats, 2)])
        .await;
    let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
    (buyer, paid)
}

/// The id of `order`'s part of `partner`.
#[track_caller]
fn part_id(order: &Value, partner: i64) -> i64 {
    let part = array(order, "partner_orders")
        .iter()
        .find(|p| int(p, "partner_id") == partner)
        .unwrap_or_else(|| panic!("no partner order of partner {partner}: {order}"));
    int(part, "id")
}

/// `order`'s part `id` as the buyer reads it now.
async fn buyer_view(app: &TestApp, buyer: &str, order_id: i64, id: i64) -> Value {
    let order = app.order(buyer, order_id).await;
    array(&order, "partner_orders")
        .iter()
        .find(|p| int(p, "id") == id)
        .cloned()
        .unwrap_or_else(|| panic!("partner order {id} not on order {order}"))
}

/// Event types of one partner order, oldest first.
async fn part_events(app: &TestApp, id: i64) -> Vec<String> {
    let events = app.state.store.events_after(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.aggregate_type == "partner_order" && e.aggregate_id == id)
        .map(|e| e.event_type)
        .collect()
}

backend_tests!(sellers_prepare_ship_and_deliver, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let (north, south) = (part_id(&order, shop.north), part_id(&order, shop.south));
    let seller = &shop.north_seller;

    let preparing = expect(&app.prepare(seller, north).await, 200).clone();
    assert_eq!(preparing["status"], "preparing", "{preparing}");
    assert_eq!(
        (int(&preparing, "id"), int(&preparing, "order_id")),
        (north, order_id)
    );
    assert_eq!(int(&preparing, "partner_id"), shop.north);
    parse_time(&preparing, "prepared_at");
    assert!(preparing["shipped_at"].is_null() && preparing["carrier"].is_null());
    let items = array(&preparing, "items");
    assert_eq!((items.len(), int(&items[0], "product_id")), (1, shop.boots));

    let reply = app
        .ship(seller, north, " CJ대한통운 ", "6865-1234-5678")
        .await;
    let shipped = expect(&reply, 200).clone();
    assert_eq!(shipped["status"], "shipped", "{shipped}");
    assert_eq!(shipped["carrier"], "CJ대한통운", "trimmed");
    assert_eq!(shipped["tracking_number"], "6865-1234-5678");
    assert_eq!(shipped["prepared_at"], preparing["prepared_at"]);
    parse_time(&shipped, "shipped_at");

    let delivered = expect(&app.deliver(seller, north).await, 200).clone();
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    parse_time(&delivered, "delivered_at");
    assert!(delivered["confirmed_at"].is_null());

    // The buyer sees each part as it is; the order is delivered once the last part is.
    assert_eq!(buyer_view(&app, &buyer, order_id, north).await, delivered);
    let waiting = buyer_view(&app, &buyer, order_id, south).await;
    assert_eq!(waiting["status"], "paid", "{waiting}");
    assert!(waiting["tracking_number"].is_null() && waiting["prepared_at"].is_null());
    let now = app.order(&buyer, order_id).await;
    assert_eq!(now["status"], "paid");
    assert!(now["delivered_at"].is_null(), "a part is left: {now}");

    assert_eq!(
        part_events(&app, north).await,
        [
            "partner_order.preparing",
            "partner_order.shipped",
            "partner_order.delivered"
        ]
    );
    assert!(part_events(&app, south).await.is_empty());
    for step in ["prepare", "ship", "deliver"] {
        let sample = format!("partner_orders_advanced_total{{step=\"{step}\"}}");
        assert_eq!(metric(&app, &sample).await, 1.0, "{sample}");
    }
    app.assert_verify_clean().await;
});

backend_tests!(steps_out_of_order_are_refused, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let part = part_id(&order, shop.north);
    let admin = app.admin_token().await;

    // Each status refuses every step but its own, with nothing changed and no event.
    let refuse_all_but = |allowed: &'static str| {
        let (app, admin, buyer) = (app.clone(), admin.clone(), buyer.clone());
        async move {
            let before = buyer_view(&app, &buyer, order_id, part).await;
            let events = part_events(&app, part).await;
            for step in ["prepare", "ship", "deliver"] {
                if step == allowed {
                    continue;
                }
                let reply = match step {
                    "prepare" => app.prepare(&admin, part).await,
                    "ship" => app.ship(&admin, part, "Other", "OTHER-1").await,
                    _ => app.deliver(&admin, part).await,
                };
                expect_error(&reply, 409, "invalid_transition");
                let message = str_of(&reply.1["error"], "message");
                assert!(message.contains(str_of(&before, "status")), "{message}");
            }
            assert_eq!(buyer_view(&app, &buyer, order_id, part).await, before);
            assert_eq!(part_events(&app, part).await, events);
        }
    };
    refuse_all_but("prepare").await;
    expect(&app.prepare(&admin, part).await, 200);
    refuse_all_but("ship").await;
    expect(&app.ship(&admin, part, "CJ", "T-1").await, 200);
    refuse_all_but("deliver").await;
    expect(&app.deliver(&admin, part).await, 200);
    refuse_all_but("none").await;

    // Nor before payment, after a cancellation, or once the purchase is confirmed.
    let unpaid_buyer = app.buyer().await;
    let unpaid = app.order_ok(&unpaid_buyer, &[(shop.boots, 1)]).await;
    let unpaid_part = part_id(&unpaid, shop.north);
    let refused = app.prepare(&admin, unpaid_part).await;
    expect_error(&refused, 409, "invalid_transition");
    expect(&app.cancel(&unpaid_buyer, int(&unpaid, "id")).await, 200);
    let refused = app.prepare(&admin, unpaid_part).await;
    expect_error(&refused, 409, "invalid_transition");

    let south = part_id(&order, shop.south);
    expect(&app.prepare(&admin, south).await, 200);
    expect(&app.ship(&admin, south, "CJ", "T-2").await, 200);
    expect(&app.deliver(&admin, south).await, 200);
    let confirmed = app
        .post_empty(&format!("/orders/{order_id}/confirm"), Some(&buyer))
        .await;
    assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
    expect_error(&app.deliver(&admin, south).await, 409, "invalid_transition");
    let after = buyer_view(&app, &buyer, order_id, south).await;
    assert_eq!(after["status"], "confirmed", "{after}");
    app.assert_verify_clean().await;
});

backend_tests!(only_the_partners_sellers_and_admins, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let part = part_id(&order, shop.north);
    let stranger = app.buyer().await;

    // Another partner's seller learns nothing, not even that the id exists; a buyer (even
    // the order's own) is no seller; without a token, nothing.
    for (token, status, code) in [
        (Some(shop.south_seller.as_str()), 404, "not_found"),
        (Some(buyer.as_str()), 403, "forbidden"),
        (Some(stranger.as_str()), 403, "forbidden"),
        (None, 401, "unauthorized"),
    ] {
        for step in ["prepare", "ship", "deliver"] {
            let path = format!("/partner-orders/{part}/{step}");
            let body = json!({"carrier": "CJ", "tracking_number": "T-1"});
            let reply = match step {
                "ship" => app.post(&path, token, &body).await,
                _ => app.post_empty(&path, token).await,
            };
            expect_error(&reply, status, code);
        }
    }
    let admin = app.admin_token().await;
    expect_error(&app.prepare(&admin, 987_654_321).await, 404, "not_found");
    let unknown = app.prepare(&shop.north_seller, 987_654_321).await;
    expect_error(&unknown, 404, "not_found");
    assert_eq!(
        buyer_view(&app, &buyer, order_id, part).await["status"],
        "paid"
    );
    assert!(part_events(&app, part).await.is_empty());

    // The partner's own seller, then an admin, may.
    expect(&app.prepare(&shop.north_seller, part).await, 200);
    expect(&app.ship(&admin, part, "CJ", "T-1").await, 200);

    // The listing: the partner's sellers and admins only.
    let listing = format!("/partners/{}/orders", shop.north);
    for (token, status, code) in [
        (Some(shop.south_seller.as_str()), 403, "forbidden"),
        (Some(buyer.as_str()), 403, "forbidden"),
        (None, 401, "unauthorized"),
    ] {
        expect_error(&app.get(&listing, token).await, status, code);
    }
    let own = expect(&app.get(&listing, Some(&shop.north_seller)).await, 200).clone();
    assert_eq!(int(&own, "total"), 1, "{own}");
    let all = expect(&app.get(&listing, Some(&admin)).await, 200).clone();
    assert_eq!(all["items"], own["items"]);
    let missing = app.get("/partners/987654321/orders", Some(&admin)).await;
    expect_error(&missing, 404, "not_found");
    let unknown = app
        .get("/partners/987654321/orders", Some(&shop.north_seller))
        .await;
    expect_error(&unknown, 403, "forbidden");
    app.assert_verify_clean().await;
});

backend_tests!(bad_shipments_change_nothing, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let part = part_id(&order, shop.north);
    let seller = &shop.north_seller;
    expect(&app.prepare(seller, part).await, 200);
    let path = format!("/partner-orders/{part}/ship");

    let long_number = "9".repeat(65);
    let long_carrier = "가".repeat(101);
    for body in [
        json!({"carrier": "", "tracking_number": "T-1"}),
        json!({"carrier": "   ", "tracking_number": "T-1"}),
        json!({"carrier": "CJ", "tracking_number": ""}),
        json!({"carrier": "CJ", "tracking_number": "12 34"}),
        json!({"carrier": "CJ", "tracking_number": "１２３"}),
        json!({"carrier": "CJ", "tracking_number": long_number}),
        json!({"carrier": long_carrier, "tracking_number": "T-1"}),
        json!({"carrier": "C\u{7}J", "tracking_number": "T-1"}),
        json!({"carrier": "CJ\nLogistics", "tracking_number": "T-1"}),
        json!({"carrier": "CJ"}),
        json!({"carrier": 5, "tracking_number": "T-1"}),
        json!({"carrier": "CJ", "tracking_number": "T-1", "eta": "tomorrow"}),
    ] {
        let reply = app.post(&path, Some(seller), &body).await;
        expect_error(&reply, 422, "validation_failed");
    }
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.client.post(app.api(&path)).bearer_auth(seller);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { read_reply(request.body(body).send().await.unwrap()).await }
    };
    let malformed = raw("{\"carrier\": \"CJ\",", Some("application/json")).await;
    expect_error(&malformed, 400, "malformed_json");
    let untyped = raw("{}", None).await;
    expect_error(&untyped, 415, "unsupported_media_type");
    let bad_path = app
        .post_empty("/partner-orders/abc/prepare", Some(seller))
        .await;
    expect_error(&bad_path, 400, "invalid_path");

    let now = buyer_view(&app, &buyer, order_id, part).await;
    assert_eq!(now["status"], "preparing", "{now}");
    assert!(now["carrier"].is_null() && now["shipped_at"].is_null());
    assert_eq!(part_events(&app, part).await, ["partner_order.preparing"]);

    // The listing's query is checked too.
    let listing = format!("/partners/{}/orders", shop.north);
    for query in ["?status=lost", "?size=0", "?page=0", "?size=101"] {
        let reply = app.get(&format!("{listing}{query}"), Some(seller)).await;
        expect_error(&reply, 400, "invalid_query");
    }
    app.assert_verify_clean().await;
});

backend_tests!(the_buyer_follows_each_step_live, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let user_id = app.user_id(&buyer).await;
    let (north, south) = (part_id(&order, shop.north), part_id(&order, shop.south));

    let mut stream = SseReader::new(app.subscribe(&buyer, order_id).await);
    let (name, current) = stream.next_named_event(SSE_WAIT).await;
    assert_eq!(
        (name.as_str(), &current["status"]),
        ("status", &json!("paid"))
    );
    let mut mine = my_events(&app, &buyer).await;

    expect(&app.prepare(&shop.north_seller, north).await, 200);
    let (name, live) = stream.next_named_event(SSE_WAIT).await;
    assert_eq!(name, "partner_order", "{live}");
    assert_eq!(live["status"], "preparing");
    assert_eq!(int(&live, "partner_order_id"), north);
    assert_eq!(
        (int(&live, "order_id"), int(&live, "user_id")),
        (order_id, user_id)
    );
    let own = next_of_type(&mut mine, user_id, "partner_order.preparing").await;
    assert_eq!(own["payload"], live);

    let reply = app.ship(&shop.north_seller, north, "CJ", "6865-1").await;
    expect(&reply, 200);
    let (name, live) = stream.next_named_event(SSE_WAIT).await;
    assert_eq!(name, "partner_order", "{live}");
    assert_eq!(
        (&live["status"], &live["carrier"], &live["tracking_number"]),
        (&json!("shipped"), &json!("CJ"), &json!("6865-1"))
    );
    let own = next_of_type(&mut mine, user_id, "partner_order.shipped").await;
    assert_eq!(own["payload"]["tracking_number"], "6865-1");

    expect(&app.deliver(&shop.north_seller, north).await, 200);
    for step in ["prepare", "ship", "deliver"] {
        let reply = match step {
            "prepare" => app.prepare(&shop.south_seller, south).await,
            "ship" => app.ship(&shop.south_seller, south, "Hanjin", "H-9").await,
            _ => app.deliver(&shop.south_seller, south).await,
        };
        expect(&reply, 200);
    }
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let (name, live) = stream.next_named_event(SSE_WAIT).await;
        assert_eq!(name, "partner_order", "{live}");
        if live["status"] == "delivered" {
            delivered.push(int(&live, "partner_order_id"));
        }
    }
    assert_eq!(delivered, [north, south]);
    let confirm = format!("/orders/{order_id}/confirm");
    expect(&app.post_empty(&confirm, Some(&buyer)).await, 200);
    let (name, live) = stream.next_named_event(SSE_WAIT).await;
    assert_eq!(
        (name.as_str(), &live["status"]),
        ("status", &json!("confirmed"))
    );
    next_of_type(&mut mine, user_id, "order.confirmed").await;
});

backend_tests!(a_partners_orders_newest_first, |app| async move {
    let shop = shop(&app).await;
    let (_, first) = paid_order(&app, &shop).await;
    let mut orders = vec![first];
    for _ in 0..2 {
        let buyer = app.buyer().await;
        let order = app.order_ok(&buyer, &[(shop.boots, 2)]).await;
        orders.push(expect(&app.pay(&buyer, &order).await, 200).clone());
    }
    let unpaid_buyer = app.buyer().await;
    orders.push(app.order_ok(&unpaid_buyer, &[(shop.boots, 1)]).await);
    let parts: Vec<i64> = orders.iter().map(|o| part_id(o, shop.north)).collect();
    expect(&app.prepare(&shop.north_seller, parts[1]).await, 200);
    let seller = &shop.north_seller;
    let listing = |query: &str| format!("/partners/{}/orders{query}", shop.north);

    let all = expect(&app.get(&listing(""), Some(seller)).await, 200).clone();
    assert_eq!(int(&all, "total"), 4, "{all}");
    let ids: Vec<i64> = array(&all, "items").iter().map(|p| int(p, "id")).collect();
    let mut newest_first = parts.clone();
    newest_first.reverse();
    assert_eq!(ids, newest_first);
    for (item, order) in array(&all, "items").iter().zip(orders.iter().rev()) {
        assert_eq!(int(item, "order_id"), int(order, "id"), "{item}");
        assert_eq!(int(item, "partner_id"), shop.north);
        assert!(item.get("user_id").is_none(), "no buyer ids: {item}");
        let items = array(item, "items");
        assert_eq!((items.len(), int(&items[0], "product_id")), (1, shop.boots));
    }
    let statuses: Vec<&str> = array(&all, "items")
        .iter()
        .map(|p| str_of(p, "status"))
        .collect();
    assert_eq!(statuses, ["pending_payment", "paid", "preparing", "paid"]);

    let page = expect(
        &app.get(&listing("?page=2&size=3"), Some(seller)).await,
        200,
    )
    .clone();
    assert_eq!((int(&page, "page"), int(&page, "size")), (2, 3));
    assert_eq!(int(&page, "total"), 4);
    let ids: Vec<i64> = array(&page, "items").iter().map(|p| int(p, "id")).collect();
    assert_eq!(ids, [parts[0]]);

    for (status, expected) in [
        ("preparing", vec![parts[1]]),
        ("paid", vec![parts[2], parts[0]]),
        ("pending_payment", vec![parts[3]]),
        ("delivered", vec![]),
    ] {
        let reply = app
            .get(&listing(&format!("?status={status}")), Some(seller))
            .await;
        let body = expect(&reply, 200);
        let ids: Vec<i64> = array(body, "items").iter().map(|p| int(p, "id")).collect();
        assert_eq!(ids, expected, "{status}");
        assert_eq!(int(body, "total"), expected.len() as i64, "{status}");
    }
    let south_listing = format!("/partners/{}/orders", shop.south);
    let reply = app.get(&south_listing, Some(&shop.south_seller)).await;
    let south = expect(&reply, 200).clone();
    let ids: Vec<i64> = array(&south, "items")
        .iter()
        .map(|p| int(p, "id"))
        .collect();
    assert_eq!(ids, [part_id(&orders[0], shop.south)], "only South's part");
});

backend_tests!(confirmation_follows_the_last_delivery, |app| async move {
    let shop = shop(&app).await;
    let (buyer, order) = paid_order(&app, &shop).await;
    let order_id = int(&order, "id");
    let (north, south) = (part_id(&order, shop.north), part_id(&order, shop.south));
    let admin = app.admin_token().await;
    let confirm = |token: String| {
        let app = app.clone();
        async move {
            let path = format!("/orders/{order_id}/confirm");
            app.post_empty(&path, Some(&token)).await
        }
    };
    expect_error(&confirm(buyer.clone()).await, 409, "order_not_delivered");
    app.deliver_part(&admin, north).await;
    expect_error(&confirm(buyer.clone()).await, 409, "order_not_delivered");
    expect_error(&confirm(admin.clone()).await, 409, "order_not_delivered");
    let waiting = app.order(&buyer, order_id).await;
    assert_eq!(waiting["status"], "paid");
    assert!(waiting["delivered_at"].is_null(), "{waiting}");

    let last = app.deliver_part(&admin, south).await;
    let delivered = app.order(&buyer, order_id).await;
    assert_eq!(
        delivered["delivered_at"], last["delivered_at"],
        "the last delivery"
    );
    let confirmed = expect(&confirm(buyer.clone()).await, 200).clone();
    assert_eq!(confirmed["status"], "confirmed");
    for part in array(&confirmed, "partner_orders") {
        assert_eq!(part["status"], "confirmed", "{part}");
        assert_eq!(part["confirmed_at"], confirmed["updated_at"]);
    }
    expect_error(&confirm(buyer.clone()).await, 409, "order_not_confirmable");
    app.assert_verify_clean().await;
});

backend_tests!(
    automatic_confirmation_counts_from_the_last_delivery,
    config = |c| {
        c.auto_confirm_after_secs = AUTO_CONFIRM_AFTER_SECS;
        c.sweeper_interval_ms = 100;
        // The test moves the clock three times ten minutes; its tokens must outlive that.
        c.access_token_ttl_secs = 3_600;
    },
    |app| async move {
        let shop = shop(&app).await;
        let (buyer, order) = paid_order(&app, &shop).await;
        let order_id = int(&order, "id");
        let orders = &app.state.app.orders;
        let later = Duration::from_secs(AUTO_CONFIRM_AFTER_SECS + 1);
        // What the sweeper runs on each pass: nothing is due while a part is undelivered,
        // however long ago the payment was.
        let nothing_due = || async {
            let due = orders
                .confirm_due(app.clock.now(), AUTO_CONFIRM_AFTER_SECS, 100)
                .await
                .unwrap();
            assert_eq!(due, 0);
            assert_eq!(app.order(&buyer, order_id).await["status"], "paid");
        };
        let admin = app.admin_token().await;
        app.clock.advance(later);
        nothing_due().await;
        app.deliver_part(&admin, part_id(&order, shop.north)).await;
        app.clock.advance(later);
        nothing_due().await;

        app.deliver_part(&admin, part_id(&order, shop.south)).await;
        let delivered = app.order(&buyer, order_id).await;
        nothing_due().await;

        app.clock.advance(later);
        let confirmed = eventually(
            Duration::from_secs(10),
            "the sweeper to confirm the delivered order",
            || {
                let (app, buyer) = (app.clone(), buyer.clone());
                async move {
                    let order = app.order(&buyer, order_id).await;
                    (order["status"] == "confirmed").then_some(order)
                }
            },
        )
        .await;
        let waited = parse_time(&confirmed, "updated_at") - parse_time(&delivered, "delivered_at");
        assert!(
            waited >= time::Duration::seconds(AUTO_CONFIRM_AFTER_SECS as i64),
            "confirmed {waited} after the last delivery"
        );
        assert_eq!(
            metric(&app, "orders_confirmed_total{reason=\"auto\"}").await,
            1.0
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    partner_orders_keep_the_rate_of_their_placement,
    |app| async move {
        let shop = shop(&app).await;
        let (_, before) = paid_order(&app, &shop).await;
        let rate_of = |part: i64| {
            let app = app.clone();
            async move {
                let sql =
                    format!("SELECT commission_rate_bps FROM partner_orders WHERE id = {part}");
                query_int(&app, &sql).await
            }
        };
        assert_eq!(rate_of(part_id(&before, shop.north)).await, 1000);
        assert_eq!(rate_of(part_id(&before, shop.south)).await, 500);

        // No route changes a partner's rate yet; an operator's change applies to new orders.
        let sql = format!(
            "UPDATE partners SET commission_rate_bps = 1500 WHERE id = {}",
            shop.north
        );
        execute_sql(&app, &sql).await;
        let (_, after) = paid_order(&app, &shop).await;
        assert_eq!(rate_of(part_id(&after, shop.north)).await, 1500);
        assert_eq!(rate_of(part_id(&before, shop.north)).await, 1000, "kept");
    }
);
