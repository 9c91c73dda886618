//! Fixtures for the catalog: products, stock levels and the movement ledger.

use crate::helpers::{array, expect, int, unique, TestApp};
use serde_json::{json, Value};

/// Stock levels as the API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

impl TestApp {
    /// POSTs `/products` and insists on 201; returns the product.
    pub async fn create_product(&self, token: &str, body: &Value) -> Value {
        expect(&self.post("/products", Some(token), body).await, 201).clone()
    }

    /// A product of `partner_id`, created by the admin; returns its id.
    pub async fn product_of(
        &self,
        partner_id: i64,
        price: i64,
        stock: i64,
        max_per_user: Option<i64>,
    ) -> i64 {
        let admin = self.admin_token().await;
        let mut body = json!({
            "name": unique("product"),
            "price": price,
            "stock": stock,
            "partner_id": partner_id,
        });
        if let Some(limit) = max_per_user {
            body["max_per_user"] = json!(limit);
        }
        int(&self.create_product(&admin, &body).await, "id")
    }

    /// A product of a new partner; returns its id.
    pub async fn simple_product(&self, price: i64, stock: i64) -> i64 {
        let partner = self.create_partner(&unique("partner"), 1000).await;
        self.product_of(partner, price, stock, None).await
    }

    pub async fn stock(&self, product_id: i64) -> Stock {
        let admin = self.admin_token().await;
        let reply = self
            .get(&format!("/products/{product_id}/stock"), Some(&admin))
            .await;
        let body = expect(&reply, 200);
        assert_eq!(
            int(body, "product_id"),
            product_id,
            "stock of the wrong product: {body}"
        );
        let stock = Stock {
            on_hand: int(body, "on_hand"),
            held: int(body, "held"),
            available: int(body, "available"),
        };
        assert_eq!(
            stock.available,
            stock.on_hand - stock.held,
            "available != on_hand - held: {body}"
        );
        stock
    }

    /// Every movement of the product, newest first, across all pages.
    pub async fn movements(&self, product_id: i64) -> Vec<Value> {
        let admin = self.admin_token().await;
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("/products/{product_id}/movements?page={page}&size=100");
            let reply = self.get(&path, Some(&admin)).await;
            let body = expect(&reply, 200);
            let items = array(body, "items");
            let total = int(body, "total") as usize;
            all.extend(items.iter().cloned());
            if items.is_empty() || all.len() >= total {
                assert_eq!(
                    all.len(),
                    total,
                    "movement pages do not add up to total: {body}"
                );
                break;
            }
        }
        all
    }

    pub async fn movements_of_kind(&self, product_id: i64, kind: &str) -> Vec<Value> {
        self.movements(product_id)
            .await
            .into_iter()
            .filter(|m| m["kind"] == kind)
            .collect()
    }
}
