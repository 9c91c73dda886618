//! Returns after confirmation (issue 10): a seller (or admin) takes back a partner order
//! whose purchase was confirmed. The part becomes `refunded` (the order stays confirmed),
//! its money and points share go back to the buyer, the points its purchase earned are
//! taken back pro rata, and the seller's books get a `refund` entry negating the sale — a
//! negative line on their next statement. The goods go back to the seller, not to stock.

use crate::bad_input::raw;
use crate::helpers::*;
use crate::partial_cancel::{balance, paid_order, part_id, reason, refunded_won, shop, Shop};
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough for the earning consumer to see `order.confirmed`.
const EARN_WAIT: Duration = Duration::from_secs(15);

/// Puts back the `sale` entries of `order_id`'s confirmed parts as the purchase
/// confirmation wrote them (migration 0010's rule), where a test took them away.
async fn book_sales(app: &TestApp, order_id: i64) {
    execute_sql(
        app,
        &format!(
            "INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind,
                 subtotal, commission_rate_bps, commission, net, confirmed_at, recorded_at)
             SELECT partner_id, id, order_id, 'sale', subtotal, commission_rate_bps,
                 (subtotal * commission_rate_bps + 5000) / 10000,
                 subtotal - (subtotal * commission_rate_bps + 5000) / 10000,
                 confirmed_at, confirmed_at
             FROM partner_orders WHERE order_id = {order_id} AND confirmed_at IS NOT NULL
             ON CONFLICT (partner_order_id, kind) DO NOTHING"
        ),
    )
    .await;
}

/// [`paid_order`] with both parts delivered and the purchase confirmed by the buyer, once
/// the 26 points it earns (1% of 2,600 won) are the buyer's. Returns the order.
async fn confirmed_order(app: &TestApp, shop: &Shop, buyer: &str) -> Value {
    let (order, _) = paid_order(app, shop, buyer).await;
    let order_id = int(&order, "id");
    app.deliver_part(&shop.a.1, part_id(&order, 0)).await;
    app.deliver_part(&shop.b.1, part_id(&order, 1)).await;
    let confirmed = app
        .post_empty(&format!("/orders/{order_id}/confirm"), Some(buyer))
        .await;
    assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
    eventually(EARN_WAIT, "26 points earned", || async {
        (balance(app, buyer).await == 26).then_some(())
    })
    .await;
    order
}

async fn return_part(app: &TestApp, token: Option<&str>, id: i64, body: &Value) -> Reply {
    app.post(&format!("/partner-orders/{id}/return"), token, body)
        .await
}

/// `(subtotal, commission_rate_bps, commission, net)` of a partner order's entry of `kind`,
/// or zeros when it has none.
async fn entry(app: &TestApp, partner_order_id: i64, kind: &str) -> (i64, i64, i64, i64) {
    let column = |name: &str| {
        format!(
            "SELECT CAST(COALESCE(SUM({name}), 0) AS BIGINT) FROM settlement_entries \
             WHERE partner_order_id = {partner_order_id} AND kind = '{kind}'"
        )
    };
    (
        query_int(app, &column("subtotal")).await,
        query_int(app, &column("commission_rate_bps")).await,
        query_int(app, &column("commission")).await,
        query_int(app, &column("net")).await,
    )
}

async fn events_of(app: &TestApp, event_type: &str, aggregate_id: i64) -> i64 {
    query_int(
        app,
        &format!(
            "SELECT COUNT(*) FROM outbox \
             WHERE event_type = '{event_type}' AND aggregate_id = {aggregate_id}"
        ),
    )
    .await
}

/// Gateway refunds that went through (`payments_total{reason="refunded"}`).
async fn gateway_refunds(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("payments_total{reason=\"refunded\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

backend_tests!(
    a_returned_part_is_refunded_and_negated_on_the_sellers_books,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let order = confirmed_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        let (a, b) = (part_id(&order, 0), part_id(&order, 1));
        let refunds_before = gateway_refunds(&app).await;

        let body = json!({"reason": "  the sole came off after a week \n"});
        let returned = return_part(&app, Some(&shop.b.1), b, &body).await;
        let part = expect(&returned, 200).clone();
        assert_eq!(part["status"], "refunded", "{part}");
        assert_eq!(part["return_reason"], "the sole came off after a week");
        assert!(!part["returned_at"].is_null(), "{part}");
        assert!(
            !part["confirmed_at"].is_null(),
            "it keeps its confirmation: {part}"
        );

        // The order stays confirmed; the buyer sees the return on the part.
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["status"], "confirmed", "{now}");
        let seen = &array(&now, "partner_orders")[1];
        assert_eq!(seen["status"], "refunded");
        assert_eq!(seen["returned_at"], part["returned_at"]);
        assert_eq!(seen["return_reason"], "the sole came off after a week");
        assert!(array(&now, "partner_orders")[0]["returned_at"].is_null());

        // 650 won booked back and refunded through the gateway; 100 points spent on it
        // came back, and 6 of the 26 earned (26 × 650 / 2,600 = 6.5, rounded down) went.
        assert_eq!(refunded_won(&app, order_id).await, 650);
        assert_eq!(gateway_refunds(&app).await, refunds_before + 1.0);
        assert_eq!(balance(&app, &buyer).await, 26 + 100 - 6);
        let history = app
            .get("/me/points/history?page=1&size=100", Some(&buyer))
            .await;
        let newest = array(expect(&history, 200), "items").clone();
        let taken = newest
            .iter()
            .find(|row| row["kind"] == "adjust")
            .unwrap_or_else(|| panic!("no adjustment: {newest:?}"));
        assert_eq!(
            (int(taken, "amount"), int(taken, "order_id")),
            (-6, order_id)
        );

        // The seller's books: the sale (1,000 won at 10%) and its negation, recorded when
        // it was returned; the event for the buyer's streams.
        assert_eq!(entry(&app, b, "sale").await, (1_000, 1_000, 100, 900));
        assert_eq!(entry(&app, b, "refund").await, (-1_000, 1_000, -100, -900));
        let recorded_at_return = query_int(
            &app,
            &format!(
                "SELECT COUNT(*) FROM settlement_entries r \
                 JOIN partner_orders po ON po.id = r.partner_order_id \
                 WHERE r.partner_order_id = {b} AND r.kind = 'refund' \
                 AND r.recorded_at = po.returned_at"
            ),
        )
        .await;
        assert_eq!(recorded_at_return, 1);
        assert_eq!(events_of(&app, "partner_order.returned", b).await, 1);
        // No stock moved: the seller restocks what they took back if they wish.
        assert_eq!(app.stock(shop.b.0).await.on_hand, 4);
        assert!(app.movements_of_kind(shop.b.0, "return").await.is_empty());
        app.assert_verify_clean().await;

        // Returning it again is a transition it cannot take; nothing changes.
        let again = return_part(&app, Some(&shop.b.1), b, &reason()).await;
        expect_error(&again, 409, "invalid_transition");
        assert_eq!(refunded_won(&app, order_id).await, 650);
        assert_eq!(balance(&app, &buyer).await, 120);
        assert_eq!(entry(&app, b, "refund").await.0, -1_000);
        assert_eq!(events_of(&app, "partner_order.returned", b).await, 1);

        // The other part too, by an admin: every part refunded, the order still confirmed.
        let admin = app.admin_token().await;
        expect(&return_part(&app, Some(&admin), a, &reason()).await, 200);
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["status"], "confirmed", "{now}");
        assert_eq!(refunded_won(&app, order_id).await, 2_600);
        // 300 points back, 19 of the earned taken (26 × 1,950 / 2,600 = 19.5).
        assert_eq!(balance(&app, &buyer).await, 120 + 300 - 19);
        assert_eq!(
            entry(&app, a, "refund").await,
            (-3_000, 1_000, -300, -2_700)
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(only_a_confirmed_part_can_be_returned, |app| async move {
    let shop = shop(&app).await;
    let buyer = app.buyer().await;
    let (order, _) = paid_order(&app, &shop, &buyer).await;
    let order_id = int(&order, "id");
    let (a, b) = (part_id(&order, 0), part_id(&order, 1));
    let refused = |reply: Reply| expect_error(&reply, 409, "invalid_transition");
    // Paid, preparing, shipped, delivered: the purchase is not confirmed yet.
    refused(return_part(&app, Some(&shop.a.1), a, &reason()).await);
    expect(&app.prepare(&shop.a.1, a).await, 200);
    refused(return_part(&app, Some(&shop.a.1), a, &reason()).await);
    expect(&app.ship(&shop.a.1, a, "CJ", "T-1").await, 200);
    refused(return_part(&app, Some(&shop.a.1), a, &reason()).await);
    expect(&app.deliver(&shop.a.1, a).await, 200);
    refused(return_part(&app, Some(&shop.a.1), a, &reason()).await);
    // Cancelled before it shipped: already given back.
    let cancel = app
        .post(
            &format!("/partner-orders/{b}/cancel"),
            Some(&shop.b.1),
            &reason(),
        )
        .await;
    expect(&cancel, 200);
    refused(return_part(&app, Some(&shop.b.1), b, &reason()).await);
    // Nothing changed: only the cancelled part's 650 won went back.
    let now = app.order(&buyer, order_id).await;
    assert_eq!(now["status"], "paid", "{now}");
    let parts = array(&now, "partner_orders");
    assert_eq!(
        (&parts[0]["status"], &parts[1]["status"]),
        (&json!("delivered"), &json!("cancelled"))
    );
    assert!(parts.iter().all(|p| p["returned_at"].is_null()), "{now}");
    assert_eq!(refunded_won(&app, order_id).await, 650);
    assert_eq!(entry(&app, a, "refund").await, (0, 0, 0, 0));
    assert_eq!(events_of(&app, "partner_order.returned", a).await, 0);

    // A part refunded with its whole order (the buyer cancelled before it shipped) is
    // `refunded` already, but was never confirmed: not a return either.
    let (other, _) = paid_order(&app, &shop, &buyer).await;
    expect(&app.cancel(&buyer, int(&other, "id")).await, 200);
    refused(return_part(&app, Some(&shop.a.1), part_id(&other, 0), &reason()).await);
    assert_eq!(refunded_won(&app, int(&other, "id")).await, 2_600);
    app.assert_verify_clean().await;
});

backend_tests!(
    only_the_partners_sellers_and_admins_return_a_part,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let order = confirmed_order(&app, &shop, &buyer).await;
        let id = part_id(&order, 1);
        // Partner A's seller does not see partner B's part; the buyer may not; nobody
        // anonymous; no such part.
        expect_error(
            &return_part(&app, Some(&shop.a.1), id, &reason()).await,
            404,
            "not_found",
        );
        expect_error(
            &return_part(&app, Some(&buyer), id, &reason()).await,
            403,
            "forbidden",
        );
        expect_error(
            &return_part(&app, None, id, &reason()).await,
            401,
            "unauthorized",
        );
        expect_error(
            &return_part(&app, Some(&shop.b.1), 999_999, &reason()).await,
            404,
            "not_found",
        );
        let now = app.order(&buyer, int(&order, "id")).await;
        assert_eq!(now["partner_orders"][1]["status"], "confirmed", "{now}");
        assert_eq!(refunded_won(&app, int(&order, "id")).await, 0);
        assert_eq!(balance(&app, &buyer).await, 26);
        assert_eq!(entry(&app, id, "refund").await, (0, 0, 0, 0));
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_return_without_a_fitting_reason_changes_nothing,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let order = confirmed_order(&app, &shop, &buyer).await;
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
            let reply = return_part(&app, Some(&shop.b.1), id, &body).await;
            expect_error(&reply, 422, "validation_failed");
        }
        let broken = raw(
            &app,
            reqwest::Method::POST,
            &format!("/partner-orders/{id}/return"),
            Some(&shop.b.1),
            Some("application/json"),
            r#"{"reason": "#,
        )
        .await;
        expect_error(&broken, 400, "malformed_json");
        let now = app.order(&buyer, int(&order, "id")).await;
        assert_eq!(now["partner_orders"][1]["status"], "confirmed", "{now}");
        assert_eq!(refunded_won(&app, int(&order, "id")).await, 0);
        assert_eq!(entry(&app, id, "refund").await, (0, 0, 0, 0));
        // 500 characters is the longest reason.
        let longest = json!({"reason": "가".repeat(500)});
        expect(&return_part(&app, Some(&shop.b.1), id, &longest).await, 200);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_confirmed_part_without_its_sale_entry_is_not_returned,
    |app| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let order = confirmed_order(&app, &shop, &buyer).await;
        let order_id = int(&order, "id");
        let id = part_id(&order, 1);
        // Off the seller's books, behind the server's back: refunding it would leave the
        // seller paid for goods they took back, so the return fails as a whole.
        execute_sql(
            &app,
            &format!("DELETE FROM settlement_entries WHERE partner_order_id = {id}"),
        )
        .await;
        let reply = return_part(&app, Some(&shop.b.1), id, &reason()).await;
        expect_error(&reply, 500, "internal");
        let now = app.order(&buyer, order_id).await;
        assert_eq!(now["partner_orders"][1]["status"], "confirmed", "{now}");
        assert!(now["partner_orders"][1]["returned_at"].is_null(), "{now}");
        assert_eq!(refunded_won(&app, order_id).await, 0);
        assert_eq!(balance(&app, &buyer).await, 26);
        assert_eq!(events_of(&app, "partner_order.returned", id).await, 0);
        // Back on the books, it can be returned.
        book_sales(&app, order_id).await;
        expect(
            &return_part(&app, Some(&shop.b.1), id, &reason()).await,
            200,
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(verify_finds_a_return_off_the_books, |app| async move {
    let shop = shop(&app).await;
    let buyer = app.buyer().await;
    let order = confirmed_order(&app, &shop, &buyer).await;
    let order_id = int(&order, "id");
    let (a, b) = (part_id(&order, 0), part_id(&order, 1));
    expect(&return_part(&app, Some(&shop.b.1), b, &reason()).await, 200);
    app.assert_verify_clean().await;
    let problems = || async {
        stampede::app::audit::run(&*app.state.store)
            .await
            .unwrap()
            .problems
            .join("\n")
    };
    // A refund entry that does not negate the sale.
    execute_sql(
        &app,
        &format!(
            "UPDATE settlement_entries SET subtotal = -999, net = -899 \
                 WHERE partner_order_id = {b} AND kind = 'refund'"
        ),
    )
    .await;
    let found = problems().await;
    assert!(
        found.contains(&format!(
            "partner order {b} was returned but has no single refund settlement entry"
        )),
        "{found}"
    );
    // A refund entry for a part never returned.
    execute_sql(
        &app,
        &format!(
            "INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind,
                     subtotal, commission_rate_bps, commission, net, confirmed_at,
                     recorded_at)
                 SELECT partner_id, partner_order_id, order_id, 'refund', -subtotal,
                     commission_rate_bps, -commission, -net, confirmed_at, recorded_at + 1
                 FROM settlement_entries WHERE partner_order_id = {a} AND kind = 'sale'"
        ),
    )
    .await;
    let found = problems().await;
    assert!(
        found.contains(&format!(
            "partner order {a} has a refund settlement entry but was never returned"
        )),
        "{found}"
    );
    // The returned part's money not booked back.
    execute_sql(
        &app,
        &format!("DELETE FROM payments WHERE order_id = {order_id} AND outcome = 'refunded'"),
    )
    .await;
    let found = problems().await;
    assert!(
        found.contains(&format!(
            "order {order_id} (confirmed): 0 won booked as refunded, expected 650"
        )),
        "{found}"
    );
});

backend_tests!(the_return_is_in_the_openapi_document, |app| async move {
    let docs: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let route = &docs["paths"]["/api/v1/partner-orders/{id}/return"]["post"];
    assert!(route["responses"]["409"].is_object(), "{route}");
    let part = &docs["components"]["schemas"]["PartnerOrderView"]["properties"];
    for field in ["returned_at", "return_reason"] {
        assert!(
            part[field].is_object(),
            "PartnerOrderView lacks {field}: {part}"
        );
    }
});
