//! Fixtures for accounts: the admin, partners, sellers and bulk-provisioned buyers.

use crate::helpers::{expect, int, str_of, unique_email, TestApp};
use serde_json::{json, Value};
use stampede::domain::Role;

pub const PASSWORD: &str = "correct horse battery";
const TOKEN_TTL_SECS: u64 = 3600;

impl TestApp {
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let reply = self
            .post(
                "/auth/login",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        expect(&reply, 200).clone()
    }

    /// An admin's access token, created on first use.
    pub async fn admin_token(&self) -> String {
        self.admin
            .get_or_init(|| async {
                let email = unique_email("admin");
                stampede::app::accounts::create_user(
                    &*self.state.store,
                    self.state.clock.now(),
                    &email,
                    PASSWORD.to_owned(),
                    Role::Admin,
                    None,
                )
                .await
                .expect("accounts::create_user");
                str_of(&self.login(&email, PASSWORD).await, "access_token").to_owned()
            })
            .await
            .clone()
    }

    pub async fn create_partner(&self, name: &str, commission_rate_bps: i64) -> i64 {
        let admin = self.admin_token().await;
        let body = json!({"name": name, "commission_rate_bps": commission_rate_bps});
        let reply = self.post("/partners", Some(&admin), &body).await;
        int(expect(&reply, 201), "id")
    }

    /// A new seller of `partner_id`, signed in; returns its access token.
    pub async fn create_seller(&self, partner_id: i64) -> String {
        let admin = self.admin_token().await;
        let email = unique_email("seller");
        let body = json!({"email": email, "password": PASSWORD});
        let reply = self
            .post(
                &format!("/partners/{partner_id}/sellers"),
                Some(&admin),
                &body,
            )
            .await;
        expect(&reply, 201);
        str_of(&self.login(&email, PASSWORD).await, "access_token").to_owned()
    }

    /// `n` distinct buyers' access tokens, bulk-provisioned.
    pub async fn buyers(&self, n: usize) -> Vec<String> {
        let state = &self.state;
        let now = state.clock.now();
        let tokens = stampede::app::accounts::provision_buyers(
            &*state.store,
            &state.auth,
            now,
            n,
            TOKEN_TTL_SECS,
        )
        .await
        .expect("accounts::provision_buyers");
        assert_eq!(
            tokens.len(),
            n,
            "provision_buyers returned the wrong number of tokens"
        );
        tokens
    }

    pub async fn buyer(&self) -> String {
        self.buyers(1).await.remove(0)
    }

    pub async fn user_id(&self, token: &str) -> i64 {
        int(expect(&self.get("/me", Some(token)).await, 200), "id")
    }
}
