//! Every state change appends its event to the outbox in the same transaction (DESIGN §4).
//! Read back through the store, in order, for one buyer's whole journey.

use crate::helpers::*;
use serde_json::{json, Value};

/// Event types after `after`, optionally only those about one aggregate.
async fn events_since(app: &TestApp, after: i64, aggregate: Option<(&str, i64)>) -> Vec<String> {
    let events = app.state.store.events_after(after, 10_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| aggregate.is_none_or(|(t, id)| e.aggregate_type == t && e.aggregate_id == id))
        .map(|e| e.event_type)
        .collect()
}

backend_tests!(every_state_change_writes_an_event, |app| async move {
    let start = app.state.store.last_event_id().await.unwrap();
    let partner = app.create_partner("Evented", 1000).await;
    let product = app.product_of(partner, 5_000, 3, None).await;
    let email = unique_email("journey");
    expect(
        &app.post(
            "/auth/signup",
            None,
            &json!({"email": email, "password": "journey-pass-1"}),
        )
        .await,
        201,
    );
    let tokens = app.login(&email, "journey-pass-1").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refreshed = app
        .post(
            "/auth/refresh",
            None,
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    let access = expect(&refreshed, 200)["access_token"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or(access);
    let user_id = app.user_id(&access).await;

    let order = app.order_ok(&access, &[(product, 1)]).await;
    let order_id = int(&order, "id");
    let declined = app
        .post(
            &format!("/orders/{order_id}/pay"),
            Some(&access),
            &json!({"payment_key": "decline-1", "amount": 5_000}),
        )
        .await;
    expect_error(&declined, 402, "payment_declined");
    expect(&app.pay(&access, &order).await, 200);
    expect(&app.cancel(&access, order_id).await, 200);
    expect(&app.post_empty("/auth/logout", Some(&access)).await, 204);

    let everything = events_since(&app, start, None).await;
    for expected in [
        "partner.created",
        "product.created",
        "stock.changed",
        "user.created",
        "session.started",
        "session.rotated",
        "session.revoked",
    ] {
        assert!(
            everything.iter().any(|t| t == expected),
            "no {expected} in {everything:?}"
        );
    }
    let of_order = events_since(&app, start, Some(("order", order_id))).await;
    assert_eq!(
        of_order,
        [
            "order.placed",
            "payment.failed",
            "order.paid",
            "order.refunded"
        ]
    );
    let of_user = events_since(&app, start, Some(("user", user_id))).await;
    assert_eq!(of_user, ["user.created"]);
    let of_product: Vec<Value> = app
        .state
        .store
        .events_after(start, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "stock.changed" && e.aggregate_id == product)
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    // created with 3; hold, commit, return: available goes 3 → 2 → 2 → 3.
    let available: Vec<i64> = of_product.iter().map(|p| int(p, "available")).collect();
    assert_eq!(available, [3, 2, 2, 3]);
});
