//! The shop the model test runs in, built through the API: an admin, three partners with a
//! seller each, products spread over them, coupon campaigns and buyers, each signed in
//! with a password so it can sign in again when the test's clock has run past its tokens.
//! Returns the reference model of the same shop.

use super::reference::{Buyer, Campaign, Discount, Model, Moved, Product};
use super::rng::Rng;
use crate::helpers::{expect, int, str_of, unique_email, TestApp, PASSWORD};
use serde_json::{json, Value};
use stampede::domain::Role;
use std::collections::BTreeMap;
use std::time::Duration;

const PARTNERS: usize = 3;
const PRODUCTS: usize = 5;
const BUYERS: usize = 6;
const PRICES: [i64; 6] = [700, 1_000, 2_500, 9_900, 15_000, 40_000];
/// Signs everyone in again once the clock has moved this far past their tokens' start.
const RELOGIN_AFTER: Duration = Duration::from_secs(12 * 3600);

/// The ids the operations address, by index in the model.
#[derive(Clone)]
pub struct Ids {
    pub products: Vec<i64>,
    pub campaigns: Vec<i64>,
    pub buyers: Vec<i64>,
}

/// Who acts, and as whom. Cheap to clone into the tasks of a round.
#[derive(Clone)]
pub struct World {
    pub app: TestApp,
    pub admin: String,
    /// One seller per partner, by partner index.
    pub sellers: Vec<String>,
    pub buyers: Vec<String>,
    pub ids: Ids,
    emails: Vec<String>,
    /// How far the clock had been moved when everyone last signed in.
    signed_in_at: Duration,
}

impl World {
    pub async fn build(app: &TestApp, rng: &mut Rng) -> (World, Model) {
        let admin_email = unique_email("model-admin");
        create_user(app, &admin_email, Role::Admin).await;
        let admin = token(app, &admin_email).await;
        let mut emails = vec![admin_email];
        let mut partners = Vec::new();
        let mut sellers = Vec::new();
        for i in 0..PARTNERS {
            let body = json!({"name": format!("model partner {i}"), "commission_rate_bps": 1000});
            let partner = int(
                expect(&app.post("/partners", Some(&admin), &body).await, 201),
                "id",
            );
            let email = unique_email("model-seller");
            let body = json!({"email": email, "password": PASSWORD});
            let path = format!("/partners/{partner}/sellers");
            expect(&app.post(&path, Some(&admin), &body).await, 201);
            sellers.push(token(app, &email).await);
            emails.push(email);
            partners.push(partner);
        }
        let mut buyers = Vec::new();
        let mut buyer_models = Vec::new();
        for _ in 0..BUYERS {
            let email = unique_email("model-buyer");
            let id = create_user(app, &email, Role::Buyer).await;
            buyers.push(token(app, &email).await);
            emails.push(email);
            buyer_models.push(Buyer {
                id,
                coupons: Vec::new(),
                lots: Vec::new(),
            });
        }
        let products = products(app, &admin, &partners, rng).await;
        let campaigns = campaigns(app, &admin, rng).await;
        let earn_rate_bps = app.state.config.points_earn_rate_bps;
        let world = World {
            app: app.clone(),
            admin,
            sellers,
            buyers,
            ids: Ids {
                products: products.iter().map(|p| p.id).collect(),
                campaigns: campaigns.iter().map(|c| c.id).collect(),
                buyers: buyer_models.iter().map(|b| b.id).collect(),
            },
            emails,
            signed_in_at: Duration::ZERO,
        };
        let model = Model {
            partners,
            products,
            campaigns,
            buyers: buyer_models,
            orders: BTreeMap::new(),
            earn_rate_bps,
            tick: 0,
        };
        (world, model)
    }

    /// Signs everyone in again when the clock, now `advanced` past the test's start, has
    /// come near the end of their tokens' life.
    pub async fn keep_signed_in(&mut self, advanced: Duration) {
        if advanced - self.signed_in_at < RELOGIN_AFTER {
            return;
        }
        let mut tokens = Vec::with_capacity(self.emails.len());
        for email in &self.emails {
            tokens.push(token(&self.app, email).await);
        }
        let mut tokens = tokens.into_iter();
        self.admin = tokens.next().expect("the admin's token");
        self.sellers = tokens.by_ref().take(PARTNERS).collect();
        self.buyers = tokens.collect();
        self.signed_in_at = advanced;
    }
}

async fn create_user(app: &TestApp, email: &str, role: Role) -> i64 {
    let store = &*app.state.store;
    stampede::app::accounts::create_user(
        store,
        app.state.clock.now(),
        email,
        PASSWORD.into(),
        role,
        None,
    )
    .await
    .expect("accounts::create_user")
}

async fn token(app: &TestApp, email: &str) -> String {
    str_of(&app.login(email, PASSWORD).await, "access_token").to_owned()
}

/// Every partner gets a product first; some products have a purchase limit.
async fn products(app: &TestApp, admin: &str, partners: &[i64], rng: &mut Rng) -> Vec<Product> {
    let mut products = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let partner = i % partners.len();
        let price = rng.pick(&PRICES).expect("prices");
        let stock = rng.range(2, 12);
        let max_per_user = (i == 0 || rng.chance(30)).then(|| rng.range(2, 4));
        let mut body = json!({
            "name": format!("model product {i}"),
            "price": price,
            "stock": stock,
            "partner_id": partners[partner],
        });
        if let Some(max) = max_per_user {
            body["max_per_user"] = json!(max);
        }
        let created = app.create_product(admin, &body).await;
        products.push(Product {
            id: int(&created, "id"),
            partner,
            price,
            max_per_user,
            on_hand: stock,
            held: 0,
            moved: Moved {
                inbound: stock,
                ..Moved::default()
            },
        });
    }
    products
}

/// A fixed discount with a minimum order, a capped percentage, and a small one that sells
/// out early.
async fn campaigns(app: &TestApp, admin: &str, rng: &mut Rng) -> Vec<Campaign> {
    let shapes = [
        (
            Discount::Fixed(rng.range(5, 20) * 100),
            Some(5_000),
            rng.range(2, 4),
        ),
        (
            Discount::Percent {
                percent: rng.range(5, 30),
                max: Some(rng.range(10, 40) * 100),
            },
            None,
            rng.range(3, 5),
        ),
        (Discount::Fixed(300), None, rng.range(1, 2)),
    ];
    let mut campaigns = Vec::with_capacity(shapes.len());
    for (i, (discount, min_order, total)) in shapes.into_iter().enumerate() {
        let mut body: Value = match discount {
            Discount::Fixed(value) => json!({"discount_type": "fixed", "discount_value": value}),
            Discount::Percent { percent, max } => json!({
                "discount_type": "percent", "discount_value": percent, "max_discount": max,
            }),
        };
        body["name"] = json!(format!("model campaign {i}"));
        body["total_quantity"] = json!(total);
        if let Some(min) = min_order {
            body["min_order_amount"] = json!(min);
        }
        let reply = app.post("/coupons", Some(admin), &body).await;
        campaigns.push(Campaign {
            id: int(expect(&reply, 201), "id"),
            discount,
            min_order,
            total,
            issued: 0,
        });
    }
    campaigns
}
