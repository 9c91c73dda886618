//! Fixtures for orders: placing, reading, paying and cancelling them, and the ledger check
//! that ends many tests.

use crate::helpers::{expect, int, unique, Reply, TestApp};
use serde_json::{json, Value};

impl TestApp {
    pub async fn place_order(&self, token: &str, items: &[(i64, i64)]) -> Reply {
        self.place_order_keyed(token, &unique("key"), items).await
    }

    pub async fn place_order_keyed(&self, token: &str, key: &str, items: &[(i64, i64)]) -> Reply {
        self.post_idem("/orders", Some(token), key, &order_body(items))
            .await
    }

    /// Places an order and insists on 201; returns the order.
    pub async fn order_ok(&self, token: &str, items: &[(i64, i64)]) -> Value {
        expect(&self.place_order(token, items).await, 201).clone()
    }

    pub async fn order(&self, token: &str, order_id: i64) -> Value {
        expect(
            &self.get(&format!("/orders/{order_id}"), Some(token)).await,
            200,
        )
        .clone()
    }

    /// Pays the exact payable amount with an approving payment key.
    pub async fn pay(&self, token: &str, order: &Value) -> Reply {
        let body = json!({"payment_key": unique("pk_ok"), "amount": int(order, "payable")});
        self.post(
            &format!("/orders/{}/pay", int(order, "id")),
            Some(token),
            &body,
        )
        .await
    }

    pub async fn cancel(&self, token: &str, order_id: i64) -> Reply {
        self.post_empty(&format!("/orders/{order_id}/cancel"), Some(token))
            .await
    }

    /// `total` of the caller's `GET /orders`.
    pub async fn order_count(&self, token: &str) -> i64 {
        int(
            expect(&self.get("/orders?page=1&size=100", Some(token)).await, 200),
            "total",
        )
    }

    /// `stampede verify` on the test's database must find nothing.
    pub async fn assert_verify_clean(&self) {
        let report = stampede::app::audit::run(&*self.state.store)
            .await
            .expect("verify::run");
        assert!(
            report.is_clean(),
            "verify found problems: {:#?}",
            report.problems
        );
    }
}

pub fn order_body(items: &[(i64, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
        .collect();
    json!({ "items": items })
}
