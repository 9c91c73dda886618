//! Operator commands that act on the store directly (`stampede admin …`).

use crate::auth::AuthService;
use crate::domain::{Role, Timestamp};
use crate::store::{NewUser, Store};

/// Rows per bulk insert transaction when provisioning.
const PROVISION_CHUNK_USERS: usize = 5000;
pub const MAX_PROVISIONED_BUYERS: usize = 1_000_000;

pub async fn create_user(
    store: &dyn Store,
    email: &str,
    password: &str,
    role: Role,
    partner_id: Option<i64>,
) -> anyhow::Result<i64> {
    if (role == Role::Seller) != partner_id.is_some() {
        anyhow::bail!("a seller needs --partner, and only a seller may have one");
    }
    if let Some(partner_id) = partner_id {
        if store.partner(partner_id).await?.is_none() {
            anyhow::bail!("partner {partner_id} does not exist");
        }
    }
    let user =
        crate::http::auth::create_account(store, email, password.to_owned(), role, partner_id)
            .await
            .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code, e.message))?;
    Ok(user.id)
}

/// Creates `count` buyers in bulk and returns one access token each, for load tests.
///
/// They share one Argon2id hash of a random password that is thrown away: nobody can log in
/// as them, and 50,000 accounts cost one hash instead of 50,000 (about 40 ms each).
pub async fn provision_buyers(
    store: &dyn Store,
    auth: &AuthService,
    count: usize,
    token_ttl_secs: u64,
) -> anyhow::Result<Vec<String>> {
    if !(1..=MAX_PROVISIONED_BUYERS).contains(&count) {
        anyhow::bail!("count must be 1..={MAX_PROVISIONED_BUYERS}");
    }
    let password_hash = crate::auth::hash_password(crate::auth::random_token(32)).await?;
    let run = crate::auth::random_token(6)
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    let mut tokens = Vec::with_capacity(count);
    for start in (0..count).step_by(PROVISION_CHUNK_USERS) {
        let end = (start + PROVISION_CHUNK_USERS).min(count);
        let users: Vec<NewUser> = (start..end)
            .map(|i| NewUser {
                email: format!("buyer-{run}-{i}@loadtest.invalid"),
                password_hash: password_hash.clone(),
                role: Role::Buyer,
                partner_id: None,
            })
            .collect();
        let ids = store.insert_users_bulk(&users, Timestamp::now()).await?;
        tokens.extend(
            ids.into_iter()
                .map(|id| auth.issue_access(id, Role::Buyer, None, 0, token_ttl_secs)),
        );
    }
    Ok(tokens)
}

pub const MAX_SEEDED_PRODUCTS: usize = 1_000_000;

/// Creates a partner and `count` products for load tests, released one minute apart going
/// back from now (so `GET /products` sorted by `release_at` has a deep, realistic order),
/// each with `stock` units. Goes through the store like any product: ledger rows and events
/// included. Returns the partner id.
pub async fn seed_catalog(store: &dyn Store, count: usize, stock: i64) -> anyhow::Result<i64> {
    if !(1..=MAX_SEEDED_PRODUCTS).contains(&count) {
        anyhow::bail!("count must be 1..={MAX_SEEDED_PRODUCTS}");
    }
    if !(0..=crate::domain::values::MAX_QUANTITY).contains(&stock) {
        anyhow::bail!("stock must be 0..={}", crate::domain::values::MAX_QUANTITY);
    }
    let now = Timestamp::now();
    let partner = store.insert_partner("Seeded catalog", 1000, now).await?;
    for i in 0..count {
        let product = crate::store::NewProduct {
            partner_id: partner.id,
            name: format!("Seeded product {i}"),
            price: 10_000 + (i as i64 % 500) * 1_000,
            stock,
            release_at: Timestamp::from_millis(now.millis() - i as i64 * 60_000),
            max_per_user: None,
        };
        store.insert_product(&product, now).await?;
    }
    Ok(partner.id)
}
