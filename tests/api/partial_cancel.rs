//! Partial cancellation (issue 10): a seller (or admin) cancels one partner order before it
//! ships; its stock, its share of the points and its share of the money go back, and the
//! rest of the order goes on to delivery and confirmation. Placement shares the order's
//! discount and points among its parts (largest remainder), and each part shows its share.

use crate::helpers::*;
use crate::order_benefits::{coupon, fixed};
use crate::points::grant_lot;
use serde_json::{json, Value};

/// Two partners, each with a product, and one seller each.
pub(crate) struct Shop {
    /// Partner A's product (3,000 won) and seller.
    pub a: (i64, String),
    /// Partner B's product (1,000 won) and seller.
    pub b: (i64, String),
}

pub(crate) async fn shop(app: &TestApp) -> Shop {
    let mut sides = Vec::new();
    for (name, price) in [("A", 3_000), ("B", 1_000)] {
        let partner = app.create_partner(&format!("Partner {name}"), 1_000).await;
        let product = app.product_of(partner, price, 5, None).await;
        sides.push((product, app.create_seller(partner).await));
    }
    let b = sides.pop().unwrap();
    let a = sides.pop().unwrap();
    Shop { a, b }
}

/// A paid order of one unit of each product with a 1,000-won coupon and 400 points:
/// total 4,000; discount shares 750 / 250 (by subtotal), points shares 300 / 100 (by what
/// the discount left, 2,250 / 750); payables 1,950 / 650. Returns the order, the coupon.
pub(crate) async fn paid_order(app: &TestApp, shop: &Shop, buyer: &str) -> (Value, i64) {
    grant_lot(app, buyer, 400, None).await;
    let coupon_id = coupon(app, buyer, &fixed(1_000)).await;
    let body = json!({
        "items": [{"product_id": shop.a.0, "quantity": 1}, {"product_id": shop.b.0, "quantity": 1}],
        "coupon_id": coupon_id,
        "points": 400,
    });
    let placed = app
        .post_idem("/orders", Some(buyer), &unique("order"), &body)
        .await;
    let order = expect(&placed, 201).clone();
    assert_eq!(
        shares(&order),
        [(3_000, 750, 300, 1_950), (1_000, 250, 100, 650)],
        "{order}"
    );
    expect(&app.pay(buyer, &order).await, 200);
    (order, coupon_id)
}

/// `(subtotal, discount, points_used, payable)` of each part, in partner order.
fn shares(order: &Value) -> Vec<(i64, i64, i64, i64)> {
    array(order, "partner_orders")
        .iter()
        .map(|p| {
            (
                int(p, "subtotal"),
                int(p, "discount"),
                int(p, "points_used"),
                int(p, "payable"),
            )
        })
        .collect()
}

pub(crate) fn part_id(order: &Value, index: usize) -> i64 {
    int(&array(order, "partner_orders")[index], "id")
}

async fn cancel_part(app: &TestApp, token: Option<&str>, id: i64, body: &Value) -> Reply {
    app.post(&format!("/partner-orders/{id}/cancel"), token, body)
        .await
}

pub(crate) fn reason() -> Value {
    json!({"reason": "the size sold out at the warehouse"})
}

pub(crate) async fn balance(app: &TestApp, buyer: &str) -> i64 {
    int(
        expect(&app.get("/me/points", Some(buyer)).await, 200),
        "balance",
    )
}

pub(crate) async fn refunded_won(app: &TestApp, order_id: i64) -> i64 {
    query_int(
        app,
        &format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments \
             WHERE order_id = {order_id} AND outcome = 'refunded'"
        ),
    )
    .await
}

async fn coupon_status(app: &TestApp, buyer: &str, coupon_id: i64) -> String {
    let reply = app.get("/me/coupons?page=1&size=100", Some(buyer)).await;
    let coupons = expect(&reply, 200);
    let coupon = array(coupons, "items")
        .iter()
        .find(|c| int(c, "id") == coupon_id)
        .unwrap_or_else(|| panic!("no coupon {coupon_id}: {coupons}"))
        .clone();
    str_of(&coupon, "status").to_owned()
}

backend_tests!(
    a_cancelled_part_gives_back_its_share_and_the_rest_goes_on,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, coupon_id) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        assert_eq!(balance(&app, &buyer).await, 0);
        assert_eq!(app.stock(shop.b.0).await.on_hand, 4);

        let cancelled = cancel_part(&app, Some(&shop.b.1), part_id(&order, 1), &reason()).await;
        let part = expect(&cancelled, 200);
        assert_eq!(part["status"], "cancelled", "{part}");
        assert_eq!(int(part, "payable"), 650);

        // Its stock, its 100 points and its 650 won came back; the rest is still paid.
        assert_eq!(app.stock(shop.b.0).await.on_hand, 5);
        assert_eq!(app.movements_of_kind(shop.b.0, "return").await.len(), 1);
        assert_eq!(app.stock(shop.a.0).await.on_hand, 4);
        assert_eq!(balance(&app, &buyer).await, 100);
        assert_eq!(refunded_won(&app, order_id).await, 650);
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["status"], "paid", "{now}");
        assert_eq!(array(&now, "partner_orders")[1]["status"], "cancelled");
        assert_eq!(coupon_status(&app, &buyer, coupon_id).await, "used");
        app.assert_verify_clean().await;

        // Cancelling it again is a transition it cannot take; nothing changes.
        let again = cancel_part(&app, Some(&shop.b.1), part_id(&order, 1), &reason()).await;
        expect_error(&again, 409, "invalid_transition");
        assert_eq!(balance(&app, &buyer).await, 100);
        assert_eq!(refunded_won(&app, order_id).await, 650);

        // The other part ships and arrives; the buyer confirms the purchase.
        app.deliver_part(&shop.a.1, part_id(&order, 0)).await;
        let confirmed = app
            .post_empty(&format!("/orders/{order_id}/confirm"), Some(&buyer))
            .await;
        assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
        let listing = app
            .get(
                &format!(
                    "/partners/{}/orders?status=cancelled",
                    int(&array(&order, "partner_orders")[1], "partner_id")
                ),
                Some(&shop.b.1),
            )
            .await;
        let items = array(expect(&listing, 200), "items").clone();
        assert_eq!(items.len(), 1);
        assert_eq!(
            (
                int(&items[0], "discount"),
                int(&items[0], "points_used"),
                int(&items[0], "payable")
            ),
            (250, 100, 650)
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    cancelling_the_last_part_left_to_deliver_lets_the_order_be_confirmed,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        app.deliver_part(&shop.a.1, part_id(&order, 0)).await;
        expect(&app.prepare(&shop.b.1, part_id(&order, 1)).await, 200);
        let cancelled = cancel_part(&app, Some(&shop.b.1), part_id(&order, 1), &reason()).await;
        expect(&cancelled, 200);
        let now = app.order(&buyer, order_id).await;
        assert!(!now["delivered_at"].is_null(), "{now}");
        let confirmed = app
            .post_empty(&format!("/orders/{order_id}/confirm"), Some(&buyer))
            .await;
        assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    cancelling_every_part_refunds_the_order_and_restores_the_coupon,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, coupon_id) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        let admin = app.admin_token().await;
        expect(
            &cancel_part(&app, Some(&shop.a.1), part_id(&order, 0), &reason()).await,
            200,
        );
        assert_eq!(app.order(&buyer, order_id).await["status"], "paid");
        assert_eq!(coupon_status(&app, &buyer, coupon_id).await, "used");
        expect(
            &cancel_part(&app, Some(&admin), part_id(&order, 1), &reason()).await,
            200,
        );
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["status"], "refunded", "{now}");
        assert_eq!(coupon_status(&app, &buyer, coupon_id).await, "issued");
        assert_eq!(balance(&app, &buyer).await, 400);
        assert_eq!(refunded_won(&app, order_id).await, 2_600);
        assert_eq!(app.stock(shop.a.0).await.on_hand, 5);
        assert_eq!(app.stock(shop.b.0).await.on_hand, 5);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    only_the_partners_sellers_and_admins_cancel_a_part,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let id = part_id(&order, 1);
        // Partner A's seller does not see partner B's part; the buyer may not; nobody anonymous.
        expect_error(
            &cancel_part(&app, Some(&shop.a.1), id, &reason()).await,
            404,
            "not_found",
        );
        expect_error(
            &cancel_part(&app, Some(&buyer), id, &reason()).await,
            403,
            "forbidden",
        );
        expect_error(
            &cancel_part(&app, None, id, &reason()).await,
            401,
            "unauthorized",
        );
        let missing = cancel_part(&app, Some(&shop.b.1), 999_999, &reason()).await;
        expect_error(&missing, 404, "not_found");
        assert_eq!(
            app.order(&buyer, int(&order, "id")).await["partner_orders"][1]["status"],
            "paid"
        );
        assert_eq!(balance(&app, &buyer).await, 0);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_cancel_without_a_fitting_reason_changes_nothing,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let id = part_id(&order, 1);
        for body in [
            json!({}),
            json!({"reason": ""}),
            json!({"reason": "   "}),
            json!({"reason": "x".repeat(501)}),
            json!({"reason": "a\u{7}b"}),
            json!({"reason": 5}),
            json!({"reason": "fine", "refund": 0}),
        ] {
            let reply = cancel_part(&app, Some(&shop.b.1), id, &body).await;
            expect_error(&reply, 422, "validation_failed");
        }
        let now = app.order(&buyer, int(&order, "id")).await;
        assert_eq!(now["partner_orders"][1]["status"], "paid", "{now}");
        assert_eq!(app.stock(shop.b.0).await.on_hand, 4);
        assert_eq!(refunded_won(&app, int(&order, "id")).await, 0);
        // 500 characters is the longest reason.
        let longest = json!({"reason": "가".repeat(500)});
        expect(&cancel_part(&app, Some(&shop.b.1), id, &longest).await, 200);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_shipped_part_cannot_be_cancelled_nor_the_order_refunded,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        let (a, b) = (part_id(&order, 0), part_id(&order, 1));
        expect(&app.prepare(&shop.a.1, a).await, 200);
        expect(&app.ship(&shop.a.1, a, "CJ", "T-1").await, 200);
        expect_error(
            &cancel_part(&app, Some(&shop.a.1), a, &reason()).await,
            409,
            "invalid_transition",
        );
        // The buyer can no longer cancel the order: a part is on its way.
        expect_error(
            &app.cancel(&buyer, order_id).await,
            409,
            "order_already_shipped",
        );
        expect(&app.deliver(&shop.a.1, a).await, 200);
        expect_error(
            &cancel_part(&app, Some(&shop.a.1), a, &reason()).await,
            409,
            "invalid_transition",
        );
        expect_error(
            &app.cancel(&buyer, order_id).await,
            409,
            "order_already_shipped",
        );
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["status"], "paid", "{now}");
        assert_eq!(refunded_won(&app, order_id).await, 0);
        // The part that has not shipped can still be cancelled by its seller.
        expect(&cancel_part(&app, Some(&shop.b.1), b, &reason()).await, 200);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    the_buyer_refunds_the_rest_before_anything_ships,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, coupon_id) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        expect(&app.prepare(&shop.a.1, part_id(&order, 0)).await, 200);
        expect(
            &cancel_part(&app, Some(&shop.b.1), part_id(&order, 1), &reason()).await,
            200,
        );
        // A preparing part has not shipped: the buyer gets back what is left (1,950 won, 300
        // points), the coupon comes back with the whole order.
        let refunded = app.cancel(&buyer, order_id).await;
        assert_eq!(expect(&refunded, 200)["status"], "refunded", "{refunded:?}");
        assert_eq!(refunded_won(&app, order_id).await, 2_600);
        assert_eq!(balance(&app, &buyer).await, 400);
        assert_eq!(coupon_status(&app, &buyer, coupon_id).await, "issued");
        assert_eq!(app.stock(shop.a.0).await.on_hand, 5);
        assert_eq!(app.stock(shop.b.0).await.on_hand, 5);
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["partner_orders"][1]["status"], "cancelled", "{now}");
        assert_eq!(now["partner_orders"][0]["status"], "refunded", "{now}");
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    verify_notices_points_refunded_out_of_step_with_the_cancelled_parts,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        let (a, b) = (part_id(&order, 0), part_id(&order, 1));
        expect(&cancel_part(&app, Some(&shop.b.1), b, &reason()).await, 200);
        app.assert_verify_clean().await;

        // A won of the cancelled part's points moved to the part that goes on, against a
        // won of discount: every share still adds up and every payable is unchanged, but
        // the spent hold refunded 100 points of a part that now used 99.
        let shift = |points: i64| {
            format!(
                "UPDATE partner_orders SET points_used = points_used + {points}, \
                     discount = discount - {points} WHERE id = {a}; \
                 UPDATE partner_orders SET points_used = points_used - {points}, \
                     discount = discount + {points} WHERE id = {b}"
            )
        };
        crate::verify::assert_caught_and_undo(
            &app,
            &shift(1),
            &shift(-1),
            &format!("points hold of order {order_id} (spent): refunded 100, expected 99"),
        )
        .await;

        // Refunding the rest refunds the whole hold; a counter short of it is noticed
        // although the hold's refund rows add up.
        let refunded = app.cancel(&buyer, order_id).await;
        assert_eq!(expect(&refunded, 200)["status"], "refunded", "{refunded:?}");
        app.assert_verify_clean().await;
        crate::verify::assert_caught_and_undo(
            &app,
            &format!("UPDATE point_holds SET refunded = 100 WHERE order_id = {order_id}"),
            &format!("UPDATE point_holds SET refunded = 400 WHERE order_id = {order_id}"),
            &format!("points hold of order {order_id} (refunded): refunded 100, expected 400"),
        )
        .await;
    }
);

backend_tests!(
    units_of_a_cancelled_part_no_longer_count_toward_the_purchase_limit,
    |app| async move {
        let partner = app.create_partner("Limited", 1_000).await;
        let seller = app.create_seller(partner).await;
        let limited = app.product_of(partner, 2_000, 10, Some(2)).await;
        let other = app.simple_product(1_000, 10).await;
        let buyer = app.buyer().await;

        // Up to the limit, beside a part of another partner that goes on.
        let order = app.order_ok(&buyer, &[(limited, 2), (other, 1)]).await;
        let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
        expect_error(
            &app.place_order(&buyer, &[(limited, 1)]).await,
            422,
            "purchase_limit",
        );

        // The seller cancels the limited part: the buyer holds none of it any more.
        let part = array(&paid, "partner_orders")
            .iter()
            .find(|p| int(p, "partner_id") == partner)
            .map(|p| int(p, "id"))
            .expect("the limited part");
        expect(
            &cancel_part(&app, Some(&seller), part, &reason()).await,
            200,
        );
        assert_eq!(app.order(&buyer, int(&order, "id")).await["status"], "paid");
        let again = app.order_ok(&buyer, &[(limited, 2)]).await;
        expect(&app.pay(&buyer, &again).await, 200);
        expect_error(
            &app.place_order(&buyer, &[(limited, 1)]).await,
            422,
            "purchase_limit",
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_confirmed_purchase_earns_only_on_what_its_confirmed_parts_paid,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let (order, _) = paid_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        // The order paid 2,600 won; partner B's part (650 of them) is cancelled and refunded.
        expect(
            &cancel_part(&app, Some(&shop.b.1), part_id(&order, 1), &reason()).await,
            200,
        );
        app.deliver_part(&shop.a.1, part_id(&order, 0)).await;
        let confirmed = app
            .post_empty(&format!("/orders/{order_id}/confirm"), Some(&buyer))
            .await;
        assert_eq!(expect(&confirmed, 200)["status"], "confirmed");

        // 1% of the 1,950 won the confirmed part paid, rounded down; not of the 2,600.
        let earned = eventually(
            std::time::Duration::from_secs(15),
            "points earned on the confirmation",
            || async {
                crate::points::history(&app, &buyer)
                    .await
                    .into_iter()
                    .find(|r| r["kind"] == "earn" && r["order_id"].as_i64() == Some(order_id))
                    .map(|r| int(&r, "amount"))
            },
        )
        .await;
        assert_eq!(earned, 19);
        assert_eq!(balance(&app, &buyer).await, 100 + 19);
        app.assert_verify_clean().await;
    }
);
