//! Stock adjustments (`POST /products/{id}/adjust`): a signed correction of `on_hand` with
//! an `adjust` ledger row, guarded so it never takes `on_hand` below the units held for open
//! orders.

use crate::helpers::*;
use serde_json::{json, Value};

fn adjust_path(product: i64) -> String {
    format!("/products/{product}/adjust")
}

async fn adjust(app: &TestApp, token: &str, product: i64, delta: i64, memo: &str) -> Reply {
    app.post(
        &adjust_path(product),
        Some(token),
        &json!({"delta": delta, "memo": memo}),
    )
    .await
}

/// `{product_id, on_hand, held, available}` of an adjust reply, checked for consistency.
#[track_caller]
fn levels(body: &Value, product: i64) -> Stock {
    assert_eq!(int(body, "product_id"), product, "{body}");
    let stock = Stock {
        on_hand: int(body, "on_hand"),
        held: int(body, "held"),
        available: int(body, "available"),
    };
    assert_eq!(stock.available, stock.on_hand - stock.held, "{body}");
    stock
}

/// `stock.changed` payloads of one product, oldest first.
async fn stock_events(app: &TestApp, after: i64, product: i64) -> Vec<Value> {
    app.state
        .store
        .events_after(after, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "stock.changed" && e.aggregate_id == product)
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

backend_tests!(
    adjust_corrects_on_hand_with_a_signed_ledger_row,
    |app| async move {
        let partner = app.create_partner("Adjusting", 1000).await;
        let seller = app.create_seller(partner).await;
        let admin = app.admin_token().await;
        let product = app.product_of(partner, 2_000, 10, None).await;
        let start = app.state.store.last_event_id().await.unwrap();

        let up = adjust(&app, &seller, product, 3, "found in the back room").await;
        let expected_up = Stock {
            on_hand: 13,
            held: 0,
            available: 13,
        };
        assert_eq!(levels(expect(&up, 200), product), expected_up);
        let down = adjust(&app, &admin, product, -2, "  damaged in transit  ").await;
        let expected_down = Stock {
            on_hand: 11,
            held: 0,
            available: 11,
        };
        assert_eq!(levels(expect(&down, 200), product), expected_down);
        assert_eq!(app.stock(product).await, expected_down);

        // Newest first: the −2, then the +3, each signed, with its reason and balances.
        let rows = app.movements_of_kind(product, "adjust").await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        let summary: Vec<(i64, &str, i64, i64)> = rows
            .iter()
            .map(|m| {
                assert!(m["order_id"].is_null(), "{m}");
                (
                    int(m, "quantity"),
                    str_of(m, "memo"),
                    int(m, "on_hand_after"),
                    int(m, "held_after"),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (-2, "damaged in transit", 11, 0),
                (3, "found in the back room", 13, 0)
            ]
        );
        assert_eq!(app.movements(product).await.len(), 3, "inbound + 2 adjusts");

        let available: Vec<i64> = stock_events(&app, start, product)
            .await
            .iter()
            .map(|p| int(p, "available"))
            .collect();
        assert_eq!(available, [13, 11], "one stock.changed per adjustment");
        app.assert_verify_clean().await;
    }
);

backend_tests!(adjust_never_takes_on_hand_below_held, |app| async move {
    let product = app.simple_product(1_000, 5).await;
    let admin = app.admin_token().await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(product, 3)]).await;
    let before = Stock {
        on_hand: 5,
        held: 3,
        available: 2,
    };
    assert_eq!(app.stock(product).await, before);
    let movements = app.movements(product).await;
    let start = app.state.store.last_event_id().await.unwrap();

    // 5 − 3 = 2 < 3 held: refused, and nothing changed anywhere.
    let refused = adjust(&app, &admin, product, -3, "shrinkage").await;
    expect_error(&refused, 409, "insufficient_stock");
    assert_eq!(app.stock(product).await, before);
    assert_eq!(app.movements(product).await, movements);
    assert!(stock_events(&app, start, product).await.is_empty());

    // Down to exactly what is held is fine; one more unit is not.
    let to_held = adjust(&app, &admin, product, -2, "shrinkage").await;
    let exact = Stock {
        on_hand: 3,
        held: 3,
        available: 0,
    };
    assert_eq!(levels(expect(&to_held, 200), product), exact);
    let one_more = adjust(&app, &admin, product, -1, "shrinkage").await;
    expect_error(&one_more, 409, "insufficient_stock");
    assert_eq!(app.stock(product).await, exact);

    // Sold out now; an upward correction sells again at once (the gate is current).
    let other = app.buyer().await;
    expect_error(
        &app.place_order(&other, &[(product, 1)]).await,
        409,
        "out_of_stock",
    );
    expect(&adjust(&app, &admin, product, 1, "recount").await, 200);
    app.order_ok(&other, &[(product, 1)]).await;

    // The buyer's units survive the corrections: paying commits all three.
    expect(&app.pay(&buyer, &order).await, 200);
    assert_eq!(app.stock(product).await.on_hand, 1);
    assert_eq!(app.stock(product).await.held, 1);
    app.assert_verify_clean().await;
});

backend_tests!(adjust_never_takes_on_hand_below_zero, |app| async move {
    let product = app.simple_product(1_000, 2).await;
    let admin = app.admin_token().await;
    let movements = app.movements(product).await;
    expect_error(
        &adjust(&app, &admin, product, -3, "lost").await,
        409,
        "insufficient_stock",
    );
    assert_eq!(app.stock(product).await.on_hand, 2);
    assert_eq!(app.movements(product).await, movements);
    let zero = adjust(&app, &admin, product, -2, "lost").await;
    assert_eq!(int(expect(&zero, 200), "on_hand"), 0);
    app.assert_verify_clean().await;
});

// Twenty −1 corrections of ten units at once: the guard is one conditional write, so exactly
// ten apply and the account never goes below what is held.
backend_tests!(concurrent_adjusts_stop_exactly_at_held, |app| async move {
    let product = app.simple_product(1_000, 12).await;
    let admin = app.admin_token().await;
    let buyer = app.buyer().await;
    app.order_ok(&buyer, &[(product, 2)]).await;
    let replies = all_at_once(20, |_| {
        let (app, admin) = (app.clone(), admin.clone());
        async move { adjust(&app, &admin, product, -1, "cycle count").await }
    })
    .await;
    let applied = replies.iter().filter(|r| r.0 == 200).count();
    for reply in replies.iter().filter(|r| r.0 != 200) {
        expect_error(reply, 409, "insufficient_stock");
    }
    assert_eq!(applied, 10, "{replies:?}");
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 2,
            held: 2,
            available: 0
        }
    );
    assert_eq!(app.movements_of_kind(product, "adjust").await.len(), 10);
    app.assert_verify_clean().await;
});

backend_tests!(adjust_input_and_permissions, |app| async move {
    let partner = app.create_partner("Owner", 1000).await;
    let owner = app.create_seller(partner).await;
    let stranger_partner = app.create_partner("Stranger", 1000).await;
    let stranger = app.create_seller(stranger_partner).await;
    let buyer = app.buyer().await;
    let product = app.product_of(partner, 1_000, 10, None).await;
    let path = adjust_path(product);
    let movements = app.movements(product).await;

    for body in [
        json!({"delta": 0, "memo": "nothing"}),
        json!({"delta": 1_000_001, "memo": "too many"}),
        json!({"delta": -1_000_001, "memo": "too many"}),
        json!({"delta": 1}),
        json!({"delta": 1, "memo": ""}),
        json!({"delta": 1, "memo": "   "}),
        json!({"delta": 1, "memo": "x".repeat(501)}),
        json!({"delta": 1, "memo": null}),
        json!({"delta": "1", "memo": "string delta"}),
        json!({"memo": "no delta"}),
    ] {
        let reply = app.post(&path, Some(&owner), &body).await;
        expect_error(&reply, 422, "validation_failed");
    }
    let longest = "x".repeat(500);
    expect(&adjust(&app, &owner, product, 1, &longest).await, 200);
    expect(&adjust(&app, &owner, product, -1, "undo").await, 200);

    let foreign = adjust(&app, &stranger, product, -1, "not mine").await;
    expect_error(&foreign, 403, "forbidden");
    expect_error(
        &adjust(&app, &buyer, product, -1, "buyer").await,
        403,
        "forbidden",
    );
    let anonymous = app
        .post(&path, None, &json!({"delta": -1, "memo": "anonymous"}))
        .await;
    expect_error(&anonymous, 401, "unauthorized");
    let admin = app.admin_token().await;
    expect_error(
        &adjust(&app, &admin, 987_654_321, -1, "ghost").await,
        404,
        "not_found",
    );

    assert_eq!(app.stock(product).await.on_hand, 10);
    assert_eq!(
        app.movements(product).await.len(),
        movements.len() + 2,
        "only the two accepted adjustments were written"
    );
    app.assert_verify_clean().await;
});
