//! PortOne's webhooks (issue 11), signed as Standard Webhooks and sent to the server over
//! real HTTP beside the PortOne stub: a paid webhook pays the order whether it comes before
//! or after the buyer's own `pay`, a cancelled one refunds the order in the books, and
//! forged, stale or replayed deliveries change nothing.

use crate::helpers::*;
use serde_json::{json, Value};
use stampede::clock::Clock;
use stampede::payment::webhook::{sign, WebhookSecret};

/// A buyer with a pending order of 2 units at 1,500 won (payable 3,000), and its product.
async fn pending(app: &TestApp) -> (String, Value, i64) {
    let product = app.simple_product(1_500, 10).await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(product, 2)]).await;
    (buyer, order, product)
}

async fn checkout_ok(app: &TestApp, buyer: &str, order: &Value) -> String {
    let checkout = expect(&app.checkout(buyer, int(order, "id")).await, 200).clone();
    str_of(&checkout, "payment_id").to_owned()
}

async fn status(app: &TestApp, buyer: &str, order: &Value) -> String {
    str_of(&app.order(buyer, int(order, "id")).await, "status").to_owned()
}

/// PortOne's body for `event_type` of `payment_id` in `store_id`.
fn body(event_type: &str, payment_id: &str, store_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": event_type,
        "timestamp": "2026-12-03T10:00:00Z",
        "data": {"paymentId": payment_id, "storeId": store_id, "transactionId": "tx-1"}
    }))
    .unwrap()
}

/// How a delivery is signed: with the configured secret (or another), at the server's
/// now (or `skew_secs` away).
struct Signing<'a> {
    secret: &'a str,
    skew_secs: i64,
}

const RIGHT: Signing<'static> = Signing {
    secret: STUB_WEBHOOK_SECRET,
    skew_secs: 0,
};

/// Delivers `body` as webhook `id`; the status and the JSON answer.
async fn deliver(app: &TestApp, id: &str, body: &[u8], signing: &Signing<'_>) -> (u16, Value) {
    let timestamp = app.clock.now().millis() / 1000 + signing.skew_secs;
    let secret = WebhookSecret::parse(signing.secret).unwrap();
    let signature = sign(&secret, id, timestamp, body);
    send(app, Some((id, timestamp, &signature)), body).await
}

async fn send(app: &TestApp, headers: Option<(&str, i64, &str)>, body: &[u8]) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.api("/payments/portone/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some((id, timestamp, signature)) = headers {
        request = request
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn outcome(reply: &(u16, Value)) -> &str {
    assert_eq!(reply.0, 200, "{reply:?}");
    reply.1["outcome"].as_str().unwrap()
}

fn refused(reply: &(u16, Value)) {
    assert_eq!(reply.0, 401, "{reply:?}");
    assert_eq!(reply.1["error"]["code"], "invalid_signature", "{reply:?}");
}

/// From the stock ledger itself: the public product view follows it by event, a moment
/// after the webhook has been answered.
async fn available(app: &TestApp, product: i64) -> i64 {
    app.stock(product).await.available
}

async fn approved(app: &TestApp, payment_id: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM payments WHERE payment_key = '{payment_id}' AND outcome = 'approved'"
    );
    query_int(app, &sql).await
}

portone_tests!(
    the_webhook_first_then_the_buyer_pays_once,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order, _) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 3_000);
        let paid = body("Transaction.Paid", &id, STUB_STORE_ID);
        assert_eq!(
            outcome(&deliver(&app, "wh-1", &paid, &RIGHT).await),
            "applied"
        );
        assert_eq!(status(&app, &buyer, &order).await, "paid");
        // The buyer's own call after it: a replay.
        let replay = expect(&app.pay_with(&buyer, &order, &id).await, 200).clone();
        assert_eq!(replay["status"], "paid");
        assert_eq!(approved(&app, &id).await, 1);
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    the_buyer_first_then_the_webhook_changes_nothing,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order, _) = pending(&app).await;
        let (id, reply) = app.pay_at(&stub, &buyer, &order).await;
        expect(&reply, 200);
        let paid = body("Transaction.Paid", &id, STUB_STORE_ID);
        assert_eq!(
            outcome(&deliver(&app, "wh-2", &paid, &RIGHT).await),
            "ignored"
        );
        assert_eq!(approved(&app, &id).await, 1);
        assert!(stub.cancels().is_empty());
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    forged_stale_and_replayed_webhooks_change_nothing,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order, _) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 3_000);
        let paid = body("Transaction.Paid", &id, STUB_STORE_ID);

        // Signed with another secret; six minutes old; six minutes ahead; unsigned; a
        // body changed after signing.
        let forged = Signing {
            secret: "whsec_b3RoZXItc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXM=",
            skew_secs: 0,
        };
        refused(&deliver(&app, "wh-f", &paid, &forged).await);
        let stale = Signing {
            secret: STUB_WEBHOOK_SECRET,
            skew_secs: -360,
        };
        refused(&deliver(&app, "wh-s", &paid, &stale).await);
        let ahead = Signing {
            secret: STUB_WEBHOOK_SECRET,
            skew_secs: 360,
        };
        refused(&deliver(&app, "wh-a", &paid, &ahead).await);
        refused(&send(&app, None, &paid).await);
        let now = app.clock.now().millis() / 1000;
        let secret = WebhookSecret::parse(STUB_WEBHOOK_SECRET).unwrap();
        let signature = sign(&secret, "wh-t", now, &paid);
        let other = body("Transaction.Paid", "pay_someone_else", STUB_STORE_ID);
        refused(&send(&app, Some(("wh-t", now, &signature)), &other).await);
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");
        assert_eq!(
            stub.lookups(),
            0,
            "a refused webhook made the server ask the gateway"
        );

        // The real one, then the same delivery again.
        assert_eq!(
            outcome(&deliver(&app, "wh-r", &paid, &RIGHT).await),
            "applied"
        );
        assert_eq!(
            outcome(&deliver(&app, "wh-r", &paid, &RIGHT).await),
            "replayed"
        );
        assert_eq!(approved(&app, &id).await, 1);

        // Signed but for another store, or of a type we do not act on: ignored.
        let elsewhere = body("Transaction.Paid", &id, "store-someone-else");
        assert_eq!(
            outcome(&deliver(&app, "wh-o", &elsewhere, &RIGHT).await),
            "ignored"
        );
        let ready = body("Transaction.Ready", &id, STUB_STORE_ID);
        assert_eq!(
            outcome(&deliver(&app, "wh-y", &ready, &RIGHT).await),
            "ignored"
        );
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_payment_cancelled_at_the_gateway_refunds_the_order_once,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order, product) = pending(&app).await;
        let (id, reply) = app.pay_at(&stub, &buyer, &order).await;
        expect(&reply, 200);
        assert_eq!(available(&app, product).await, 8);

        let cancelled = body("Transaction.Cancelled", &id, STUB_STORE_ID);
        assert_eq!(
            outcome(&deliver(&app, "wh-c", &cancelled, &RIGHT).await),
            "applied"
        );
        let now = app.order(&buyer, int(&order, "id")).await;
        assert_eq!(now["status"], "refunded", "{now}");
        assert_eq!(now["cancel_reason"], "gateway_cancelled", "{now}");
        assert_eq!(available(&app, product).await, 10, "the stock came back");
        // The money is already back: the gateway is not asked to cancel it again.
        assert!(stub.cancels().is_empty());
        // Redelivered, or delivered under a new id: nothing more.
        assert_eq!(
            outcome(&deliver(&app, "wh-c", &cancelled, &RIGHT).await),
            "replayed"
        );
        assert_eq!(
            outcome(&deliver(&app, "wh-c2", &cancelled, &RIGHT).await),
            "ignored"
        );
        app.assert_verify_clean().await;
    }
);
