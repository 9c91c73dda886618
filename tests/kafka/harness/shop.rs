//! What the Kafka tests do to a node over its API to make events: paying, confirming,
//! reading points, all through the API tests' client (`tests/api/helpers`).

use crate::helpers::{eventually, expect, int, TestApp};
use serde_json::Value;
use std::time::Duration;

/// Points a confirmed purchase earns at the default rate (100 bps of `payable`).
pub fn earning(order: &Value) -> i64 {
    int(order, "payable") / 100
}

/// Pays `order` (exactly its `payable`) and insists on 200.
pub async fn pay_ok(app: &TestApp, token: &str, order: &Value) {
    let paid = app.pay(token, order).await;
    assert_eq!(expect(&paid, 200)["status"], "paid", "{:?}", paid.1);
}

/// Every part of the buyer's paid order is delivered (by the admin, through the routes,
/// each step a `partner_order.*` event), then the buyer confirms the purchase; insists on
/// 200.
pub async fn confirm_ok(app: &TestApp, token: &str, order_id: i64) {
    app.deliver_all(&app.order(token, order_id).await).await;
    let confirmed = app
        .post_empty(&format!("/orders/{order_id}/confirm"), Some(token))
        .await;
    assert_eq!(
        expect(&confirmed, 200)["status"],
        "confirmed",
        "{:?}",
        confirmed.1
    );
}

/// The buyer's point balance (`GET /me/points`).
pub async fn points_balance(app: &TestApp, token: &str) -> i64 {
    int(
        expect(&app.get("/me/points", Some(token)).await, 200),
        "balance",
    )
}

/// Waits until the buyer's balance is `balance`; fails after `within`, showing the last.
pub async fn wait_for_balance(app: &TestApp, token: &str, balance: i64, within: Duration) {
    let what = format!("a point balance of {balance}");
    eventually(within, &what, || async move {
        (points_balance(app, token).await == balance).then_some(())
    })
    .await;
}
