//! Order placement: the hot path under contention, purchase limits, idempotency, the
//! split into partner orders, release times and the live status stream.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

const SSE_WAIT: Duration = Duration::from_secs(10);

/// 500 distinct buyers race for 50 units, one each, all at once.
async fn drop_of_50_units_to_500_buyers(app: TestApp) {
    const BUYERS: usize = 500;
    const UNITS: i64 = 50;
    let product = app.simple_product(39_000, UNITS).await;
    let tokens = Arc::new(app.buyers(BUYERS).await);

    let replies = all_at_once(BUYERS, |i| {
        let (app, tokens) = (app.clone(), tokens.clone());
        async move { app.place_order(&tokens[i], &[(product, 1)]).await }
    })
    .await;

    let is_sold_out = |r: &Reply| r.0 == 409 && r.1["error"]["code"] == "out_of_stock";
    let unexpected: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.0 != 201 && !is_sold_out(r))
        .take(5)
        .collect();
    assert!(
        unexpected.is_empty(),
        "replies other than 201 / 409 out_of_stock: {unexpected:?}"
    );
    let accepted: Vec<&Value> = replies
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.1)
        .collect();
    assert_eq!(accepted.len(), UNITS as usize, "accepted orders");
    assert_eq!(
        replies.iter().filter(|r| is_sold_out(r)).count(),
        BUYERS - UNITS as usize,
        "sold-out replies"
    );

    let order_ids: HashSet<i64> = accepted.iter().map(|o| int(o, "id")).collect();
    let users: HashSet<i64> = accepted.iter().map(|o| int(o, "user_id")).collect();
    assert_eq!(
        order_ids.len(),
        UNITS as usize,
        "order ids are not distinct"
    );
    assert_eq!(
        users.len(),
        UNITS as usize,
        "a buyer got more than one order"
    );
    for order in &accepted {
        assert_eq!(order["status"], "pending_payment", "{order}");
        assert_eq!(int(order, "total"), 39_000, "{order}");
    }

    let stock = app.stock(product).await;
    assert_eq!(
        stock,
        Stock {
            on_hand: UNITS,
            held: UNITS,
            available: 0
        }
    );

    let movements = app.movements(product).await;
    let holds: Vec<&Value> = movements.iter().filter(|m| m["kind"] == "hold").collect();
    assert_eq!(holds.len(), UNITS as usize, "hold movements");
    assert_eq!(
        movements.len(),
        UNITS as usize + 1,
        "only the initial inbound and the holds: {movements:?}"
    );
    let held_after: BTreeSet<i64> = holds.iter().map(|m| int(m, "held_after")).collect();
    assert_eq!(
        held_after,
        (1..=UNITS).collect(),
        "each hold moves `held` up by exactly one"
    );
    for hold in &holds {
        assert_eq!(int(hold, "quantity"), 1, "{hold}");
        assert_eq!(int(hold, "on_hand_after"), UNITS, "{hold}");
        assert!(
            order_ids.contains(&int(hold, "order_id")),
            "hold of an order nobody got: {hold}"
        );
    }
    app.assert_verify_clean().await;
}

backend_tests!(drop_500_buyers_50_units_batched, |app| async move {
    drop_of_50_units_to_500_buyers(app).await;
});

backend_tests!(
    drop_500_buyers_50_units_batch_of_one,
    config = |c| c.placement_batch_max = 1,
    |app| async move {
        drop_of_50_units_to_500_buyers(app).await;
    }
);

backend_tests!(purchase_limit_holds_under_concurrency, |app| async move {
    let partner = app.create_partner("Limited", 500).await;
    let product = app.product_of(partner, 12_000, 100, Some(2)).await;
    let buyer = Arc::new(app.buyer().await);

    let too_many = app.place_order(&buyer, &[(product, 3)]).await;
    expect_error(&too_many, 422, "purchase_limit");

    let replies = all_at_once(20, |_| {
        let (app, buyer) = (app.clone(), buyer.clone());
        async move { app.place_order(&buyer, &[(product, 1)]).await }
    })
    .await;
    let accepted = replies.iter().filter(|r| r.0 == 201).count();
    let limited = replies
        .iter()
        .filter(|r| r.0 == 422 && r.1["error"]["code"] == "purchase_limit")
        .count();
    assert_eq!((accepted, limited), (2, 18), "replies: {replies:?}");

    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 100,
            held: 2,
            available: 98
        }
    );
    assert_eq!(app.order_count(&buyer).await, 2);
    assert_eq!(app.movements_of_kind(product, "hold").await.len(), 2);
    app.assert_verify_clean().await;
});

backend_tests!(idempotent_retries_race_to_one_order, |app| async move {
    let product = app.simple_product(5_000, 10).await;
    let buyer = Arc::new(app.buyer().await);
    let key = unique("retry");
    let items = [(product, 3)];

    let replies = all_at_once(20, |_| {
        let (app, buyer, key) = (app.clone(), buyer.clone(), key.clone());
        async move { app.place_order_keyed(&buyer, &key, &items).await }
    })
    .await;
    for reply in &replies {
        assert!(
            reply.0 == 200 || reply.0 == 201,
            "retry not answered 2xx: {reply:?}"
        );
    }
    let ids: HashSet<i64> = replies.iter().map(|r| int(&r.1, "id")).collect();
    assert_eq!(
        ids.len(),
        1,
        "retries of one key created several orders: {ids:?}"
    );
    let created = replies.iter().filter(|r| r.0 == 201).count();
    assert_eq!(
        created, 1,
        "exactly one reply creates (201), the others replay (200)"
    );
    let order_id = *ids.iter().next().unwrap();

    assert_eq!(app.order_count(&buyer).await, 1);
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 10,
            held: 3,
            available: 7
        }
    );

    // A later sequential retry still replays.
    let replay = app.place_order_keyed(&buyer, &key, &items).await;
    assert_eq!(int(expect(&replay, 200), "id"), order_id);

    // The same key with another body is refused and changes nothing.
    let mismatch = app.place_order_keyed(&buyer, &key, &[(product, 2)]).await;
    expect_error(&mismatch, 422, "idempotency_mismatch");
    assert_eq!(app.order_count(&buyer).await, 1);
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 10,
            held: 3,
            available: 7
        }
    );
    assert_eq!(app.movements_of_kind(product, "hold").await.len(), 1);

    // Keys belong to their buyer: another buyer may use the same one.
    let other = app.buyer().await;
    let theirs = app.place_order_keyed(&other, &key, &items).await;
    assert_ne!(int(expect(&theirs, 201), "id"), order_id);
    assert_eq!(app.stock(product).await.held, 6);
    app.assert_verify_clean().await;
});

backend_tests!(order_is_split_per_partner, |app| async move {
    let north = app.create_partner("North", 1000).await;
    let south = app.create_partner("South", 1500).await;
    let boots = app.product_of(north, 1_000, 10, None).await;
    let hats = app.product_of(north, 300, 10, None).await;
    let coats = app.product_of(south, 2_500, 10, None).await;
    let buyer = app.buyer().await;
    let buyer_id = app.user_id(&buyer).await;

    let order = app
        .order_ok(&buyer, &[(boots, 2), (coats, 1), (hats, 3)])
        .await;
    assert_eq!(int(&order, "user_id"), buyer_id);
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(int(&order, "total"), 2 * 1_000 + 2_500 + 3 * 300);
    assert_eq!(int(&order, "discount"), 0);
    assert_eq!(int(&order, "points_used"), 0);
    assert_eq!(int(&order, "payable"), 5_400);
    assert!(order["cancel_reason"].is_null(), "{order}");
    let ttl = (parse_time(&order, "pay_by") - parse_time(&order, "created_at")).whole_seconds();
    assert!(
        (ttl - app.limits.hold_ttl_secs as i64).abs() <= 2,
        "pay_by should be created_at + hold_ttl_secs, is {ttl} s later"
    );

    let parts = array(&order, "partner_orders");
    assert_eq!(parts.len(), 2, "one partner order per partner: {order}");
    let part = |partner: i64| {
        parts
            .iter()
            .find(|p| int(p, "partner_id") == partner)
            .unwrap_or_else(|| panic!("no partner order for partner {partner}: {order}"))
    };
    let (north_part, south_part) = (part(north), part(south));
    assert_eq!(int(north_part, "subtotal"), 2_900);
    assert_eq!(int(south_part, "subtotal"), 2_500);
    let subtotals: i64 = parts.iter().map(|p| int(p, "subtotal")).sum();
    assert_eq!(subtotals, int(&order, "total"));

    let mut north_items: Vec<(i64, i64, i64, i64)> = array(north_part, "items")
        .iter()
        .map(|i| {
            (
                int(i, "product_id"),
                int(i, "quantity"),
                int(i, "unit_price"),
                int(i, "line_total"),
            )
        })
        .collect();
    north_items.sort();
    let mut expected = vec![(boots, 2, 1_000, 2_000), (hats, 3, 300, 900)];
    expected.sort();
    assert_eq!(north_items, expected);
    let south_items = array(south_part, "items");
    assert_eq!(south_items.len(), 1);
    assert_eq!(int(&south_items[0], "product_id"), coats);
    assert_eq!(int(&south_items[0], "line_total"), 2_500);

    // Reading it back gives the same split.
    let fetched = app.order(&buyer, int(&order, "id")).await;
    assert_eq!(
        fetched["partner_orders"].as_array().map(Vec::len),
        Some(2),
        "{fetched}"
    );
    assert_eq!(int(&fetched, "total"), 5_400);

    assert_eq!(app.stock(boots).await.held, 2);
    assert_eq!(app.stock(hats).await.held, 3);
    assert_eq!(app.stock(coats).await.held, 1);
    app.assert_verify_clean().await;
});

// Buyers ask for the same two products in opposite orders at once: batches must not
// deadlock, and an order is held whole or not at all.
backend_tests!(
    crossed_two_product_orders_are_all_or_nothing,
    |app| async move {
        let partner = app.create_partner("Crossed", 800).await;
        let a = app.product_of(partner, 1_000, 30, None).await;
        let b = app.product_of(partner, 2_000, 30, None).await;
        let tokens = Arc::new(app.buyers(100).await);

        let replies = all_at_once(100, |i| {
            let (app, tokens) = (app.clone(), tokens.clone());
            let items = if i % 2 == 0 {
                [(a, 1), (b, 1)]
            } else {
                [(b, 1), (a, 1)]
            };
            async move { app.place_order(&tokens[i], &items).await }
        })
        .await;
        let accepted: Vec<&Value> = replies
            .iter()
            .filter(|r| r.0 == 201)
            .map(|r| &r.1)
            .collect();
        let sold_out = replies
            .iter()
            .filter(|r| r.0 == 409 && r.1["error"]["code"] == "out_of_stock")
            .count();
        assert_eq!(
            (accepted.len(), sold_out),
            (30, 70),
            "replies: {:?}",
            &replies[..5]
        );
        for order in accepted {
            assert_eq!(int(order, "total"), 3_000, "{order}");
        }
        assert_eq!(
            app.stock(a).await,
            Stock {
                on_hand: 30,
                held: 30,
                available: 0
            }
        );
        assert_eq!(
            app.stock(b).await,
            Stock {
                on_hand: 30,
                held: 30,
                available: 0
            }
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(release_time_gates_orders, |app| async move {
    let partner = app.create_partner("Gated", 1000).await;
    let seller = app.create_seller(partner).await;
    let later = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        + time::Duration::hours(1);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let product = app
        .create_product(&seller, &json!({"name": "Midnight sneakers", "price": 189_000, "stock": 5, "release_at": later}))
        .await;
    let id = int(&product, "id");
    assert_eq!(
        parse_time(&product, "release_at"),
        parse_time(&json!({"t": later}), "t")
    );
    let buyer = app.buyer().await;

    let early = app.place_order(&buyer, &[(id, 1)]).await;
    expect_error(&early, 409, "not_released");
    assert_eq!(
        app.stock(id).await,
        Stock {
            on_hand: 5,
            held: 0,
            available: 5
        }
    );
    assert_eq!(app.order_count(&buyer).await, 0);

    let earlier = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let earlier = earlier
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let patched = app
        .patch(
            &format!("/products/{id}"),
            Some(&seller),
            &json!({"release_at": earlier}),
        )
        .await;
    expect(&patched, 200);
    app.order_ok(&buyer, &[(id, 1)]).await;
    assert_eq!(app.stock(id).await.held, 1);
});

backend_tests!(order_events_stream_status_changes, |app| async move {
    let product = app.simple_product(7_000, 5).await;
    let buyer = app.buyer().await;
    let buyer_id = app.user_id(&buyer).await;
    let order = app.order_ok(&buyer, &[(product, 1)]).await;
    let order_id = int(&order, "id");

    let response = app.subscribe(&buyer, order_id).await;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "content-type {content_type:?}"
    );
    let mut events = SseReader::new(response);

    let first = events.next_event(SSE_WAIT).await;
    assert_eq!(first["status"], "pending_payment", "{first}");
    assert_eq!(int(&first, "order_id"), order_id);
    assert_eq!(int(&first, "user_id"), buyer_id);
    parse_time(&first, "at");

    expect(&app.pay(&buyer, &order).await, 200);
    let second = events.next_event(SSE_WAIT).await;
    assert_eq!(second["status"], "paid", "{second}");
    assert_eq!(int(&second, "order_id"), order_id);

    expect(&app.cancel(&buyer, order_id).await, 200);
    let third = events.next_event(SSE_WAIT).await;
    assert_eq!(third["status"], "refunded", "{third}");
    drop(events);

    // Only the owner may listen.
    let stranger = app.buyer().await;
    let theirs = app.subscribe(&stranger, order_id).await;
    expect_error(&read_reply(theirs).await, 404, "not_found");
    let anonymous = app
        .client
        .get(app.api(&format!("/orders/{order_id}/events")))
        .send()
        .await
        .unwrap();
    expect_error(&read_reply(anonymous).await, 401, "unauthorized");
});

// A product known to be sold out is rejected without touching the database; that shortcut
// must lift as soon as stock comes back, by a release or by an inbound delivery.
backend_tests!(
    sold_out_product_sells_again_when_stock_returns,
    |app| async move {
        let partner = app.create_partner("Scarce", 1000).await;
        let seller = app.create_seller(partner).await;
        let product = app.product_of(partner, 9_900, 1, None).await;
        let buyers = app.buyers(3).await;

        let first = app.order_ok(&buyers[0], &[(product, 1)]).await;
        expect_error(
            &app.place_order(&buyers[1], &[(product, 1)]).await,
            409,
            "out_of_stock",
        );
        expect(&app.cancel(&buyers[0], int(&first, "id")).await, 200);
        assert_eq!(app.stock(product).await.available, 1);
        let after_release = app.place_order(&buyers[1], &[(product, 1)]).await;
        expect(&after_release, 201);

        expect_error(
            &app.place_order(&buyers[2], &[(product, 1)]).await,
            409,
            "out_of_stock",
        );
        let inbound = app
            .post(
                &format!("/products/{product}/inbound"),
                Some(&seller),
                &json!({"quantity": 1}),
            )
            .await;
        expect(&inbound, 200);
        assert_eq!(app.stock(product).await.available, 1);
        let after_inbound = app.place_order(&buyers[2], &[(product, 1)]).await;
        expect(&after_inbound, 201);
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 2,
                held: 2,
                available: 0
            }
        );
        app.assert_verify_clean().await;
    }
);

// The availability gate takes an attempt's units when it lets it through and gives back
// what the database did not hold. A request that times out drops its handler: the give-back
// must still happen, or buyers are refused `out_of_stock` for stock that exists. A slow
// writer (it lingers a second for company) outlasts a 300 ms request timeout.
backend_tests!(
    a_timed_out_attempt_gives_its_gate_units_back,
    config = |c| {
        c.placement_linger_ms = 1_000;
        c.request_timeout_ms = 300;
    },
    |app| async move {
        let partner = app.create_partner(&unique("partner"), 1000).await;
        let product = app.product_of(partner, 1_000, 2, Some(1)).await;
        let buyers = app.buyers(2).await;
        let slow = |buyer: &str, key: &'static str| {
            let (app, buyer) = (app.clone(), buyer.to_owned());
            async move {
                let reply = app.place_order_keyed(&buyer, key, &[(product, 1)]).await;
                expect_error(&reply, 408, "request_timeout");
                // The writer decides the dropped attempt a little later.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
        };
        // Placed, though its buyer stopped waiting: the gate rightly keeps its unit.
        slow(&buyers[0], "first").await;
        assert_eq!(app.stock(product).await.held, 1);
        // Refused by the database (one per buyer), after the gate took the last unit.
        slow(&buyers[0], "second").await;
        assert_eq!(app.stock(product).await.held, 1);
        // The last unit is still for sale: the gate must let the next buyer through.
        slow(&buyers[1], "third").await;
        assert_eq!(app.stock(product).await.held, 2, "the last unit was sold");
        app.assert_verify_clean().await;
    }
);

// Found by reading (issue 12): a buyer's order took the last unit on one node and the
// answer was lost; the retry (same Idempotency-Key) lands on another node, whose own gate
// has seen the product sell out but never saw the attempt. Refused as out of stock, the
// buyer would be told no while holding the unit. Without a shared gate, a node's memory of
// attempts is its own: it asks the database before refusing, and the order is replayed.
backend_tests!(
    a_retry_after_the_sell_out_on_another_node_gets_its_order_back,
    |app| async move {
        let (other, other_node) = app.another_node(|_| {}).await;
        let product = app.simple_product(1_000, 1).await;
        let buyers = app.buyers(2).await;
        let first = app
            .place_order_keyed(&buyers[0], "lost-answer", &[(product, 1)])
            .await;
        let order_id = int(expect(&first, 201), "id");
        // The other node's gate has seen the product sell out.
        let refusals = || other.state.metrics.sold_out_fast_rejects.get();
        eventually(
            Duration::from_secs(10),
            "the other node's gate sold out",
            || async {
                let reply = other.place_order(&buyers[1], &[(product, 1)]).await;
                assert_eq!(reply.0.as_u16(), 409, "{:?}", reply.1);
                (refusals() >= 1).then_some(())
            },
        )
        .await;

        let retry = other
            .place_order_keyed(&buyers[0], "lost-answer", &[(product, 1)])
            .await;
        assert_eq!(retry.0.as_u16(), 200, "the order replayed: {:?}", retry.1);
        assert_eq!(int(&retry.1, "id"), order_id);
        assert_eq!(app.stock(product).await.held, 1);
        other_node.stop().await;
    }
);
