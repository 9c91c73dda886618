//! Fixtures for fulfilment: a seller's steps on partner orders, and delivering a whole
//! order so that its purchase can be confirmed.

use crate::helpers::{array, expect, int, Reply, TestApp};
use serde_json::{json, Value};

impl TestApp {
    /// `POST /partner-orders/{id}/prepare`.
    pub async fn prepare(&self, token: &str, partner_order_id: i64) -> Reply {
        let path = format!("/partner-orders/{partner_order_id}/prepare");
        self.post_empty(&path, Some(token)).await
    }

    /// `POST /partner-orders/{id}/ship` with this carrier and tracking number.
    pub async fn ship(
        &self,
        token: &str,
        partner_order_id: i64,
        carrier: &str,
        tracking_number: &str,
    ) -> Reply {
        let path = format!("/partner-orders/{partner_order_id}/ship");
        let body = json!({"carrier": carrier, "tracking_number": tracking_number});
        self.post(&path, Some(token), &body).await
    }

    /// `POST /partner-orders/{id}/deliver`.
    pub async fn deliver(&self, token: &str, partner_order_id: i64) -> Reply {
        let path = format!("/partner-orders/{partner_order_id}/deliver");
        self.post_empty(&path, Some(token)).await
    }

    /// Prepares, ships and delivers one paid partner order as `token`, insisting on 200 at
    /// each step; returns it delivered.
    pub async fn deliver_part(&self, token: &str, partner_order_id: i64) -> Value {
        let id = partner_order_id;
        expect(&self.prepare(token, id).await, 200);
        let tracking = format!("TRACK-{id}");
        expect(&self.ship(token, id, "CJ Logistics", &tracking).await, 200);
        let done = expect(&self.deliver(token, id).await, 200).clone();
        assert_eq!(done["status"], "delivered", "{done}");
        done
    }

    /// Delivers every partner order of a paid `order` (as the API showed it) through the
    /// routes, as the admin; returns the delivered partner orders.
    pub async fn deliver_all(&self, order: &Value) -> Vec<Value> {
        let admin = self.admin_token().await;
        let mut delivered = Vec::new();
        for part in array(order, "partner_orders") {
            delivered.push(self.deliver_part(&admin, int(part, "id")).await);
        }
        delivered
    }
}
