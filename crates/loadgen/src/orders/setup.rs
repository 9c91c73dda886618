//! What an order load test needs before the clock starts, made through the API as a shop's
//! admin and its buyers would: the buyers' ids, a partner and its products, the coupon
//! campaigns and every buyer's claim on each, and every buyer's points. Each call is
//! retried when the server asks for it (`429`, `503` with `Retry-After`): a setup that
//! meets the per-user rate limit must still finish, and a claim or a grant sent twice is
//! harmless (the campaign refuses a second claim, a grant carries an Idempotency-Key).

use crate::api::{error_code, Admin, Created, Target};
use crate::follow;
use crate::runner;
use anyhow::Context;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Tries of one setup call the server keeps asking to repeat.
const MAX_TRIES: u32 = 30;
/// Pause before a try the server did not say when to make.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What the setup made, by buyer.
pub struct Prepared {
    pub user_ids: Vec<i64>,
    pub product_ids: Vec<i64>,
    pub campaign_ids: Vec<i64>,
    /// Buyer b's coupon from campaign k is `coupons[b * campaigns + k]`.
    pub coupons: Vec<i64>,
}

/// The sizes the setup works to.
pub struct Sizes {
    pub products: u32,
    pub stock_per_product: i64,
    pub price: i64,
    pub discount: i64,
    /// Campaigns, each giving every buyer one coupon: the orders a buyer may place.
    pub per_buyer: u64,
    /// Points granted to every buyer: `per_buyer × points per order`.
    pub points_each: i64,
    /// Setup requests in flight.
    pub width: usize,
}

#[derive(Deserialize)]
struct Me {
    id: i64,
}

pub async fn prepare(
    client: &Client,
    target: &Target,
    admin: &Admin,
    tokens: &[HeaderValue],
    sizes: &Sizes,
    run_id: &str,
) -> anyhow::Result<Prepared> {
    let user_ids = buyer_ids(client, target, tokens, sizes.width).await?;
    let partner_id = admin
        .create_partner(&format!("loadgen orders {run_id}"))
        .await?;
    let mut product_ids = Vec::with_capacity(sizes.products as usize);
    for p in 0..sizes.products {
        let product = serde_json::json!({
            "name": format!("loadgen orders {run_id} #{p}"),
            "price": sizes.price,
            "stock": sizes.stock_per_product,
            "partner_id": partner_id,
        });
        product_ids.push(admin.create_product(&product).await?);
    }
    let mut campaign_ids = Vec::with_capacity(sizes.per_buyer as usize);
    for k in 0..sizes.per_buyer {
        let campaign = serde_json::json!({
            "name": format!("loadgen orders {run_id} #{k}"),
            "discount_type": "fixed",
            "discount_value": sizes.discount,
            "total_quantity": tokens.len(),
        });
        let created: Created = admin
            .post_json("/api/v1/coupons", &campaign, "creating a campaign")
            .await?;
        campaign_ids.push(created.id);
    }
    let coupons = claim_all(client, target, tokens, &campaign_ids, sizes.width).await?;
    grant_all(admin, &user_ids, sizes.points_each, run_id, sizes.width).await?;
    Ok(Prepared {
        user_ids,
        product_ids,
        campaign_ids,
        coupons,
    })
}

async fn buyer_ids(
    client: &Client,
    target: &Target,
    tokens: &[HeaderValue],
    width: usize,
) -> anyhow::Result<Vec<i64>> {
    let url = target.endpoint("/api/v1/me")?;
    let (client, tokens) = (client.clone(), Arc::new(tokens.to_vec()));
    each(tokens.len(), width, move |b| {
        let request = client
            .get(url.clone())
            .header(AUTHORIZATION, tokens[b].clone());
        async move { Ok(call::<Me>(request, "reading a buyer (GET /me)").await?.id) }
    })
    .await
}

/// Every buyer claims one coupon of every campaign; buyer-major, as [`Prepared::coupons`].
async fn claim_all(
    client: &Client,
    target: &Target,
    tokens: &[HeaderValue],
    campaign_ids: &[i64],
    width: usize,
) -> anyhow::Result<Vec<i64>> {
    let urls = campaign_ids
        .iter()
        .map(|id| target.endpoint(&format!("/api/v1/coupons/{id}/issue")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (client, tokens) = (client.clone(), Arc::new(tokens.to_vec()));
    let per_buyer = campaign_ids.len();
    each(tokens.len() * per_buyer, width, move |i| {
        let request = client
            .post(urls[i % per_buyer].clone())
            .header(AUTHORIZATION, tokens[i / per_buyer].clone());
        async move { Ok(call::<Created>(request, "claiming a coupon").await?.id) }
    })
    .await
}

async fn grant_all(
    admin: &Admin,
    user_ids: &[i64],
    amount: i64,
    run_id: &str,
    width: usize,
) -> anyhow::Result<()> {
    let admin = Arc::new(admin.clone());
    let user_ids = Arc::new(user_ids.to_vec());
    let run_id = run_id.to_owned();
    each(user_ids.len(), width, move |b| {
        let grant = serde_json::json!({
            "user_id": user_ids[b],
            "amount": amount,
            "reason": format!("loadgen orders {run_id}"),
        });
        let key = format!("lg-{run_id}-grant-{b}");
        let admin = admin.clone();
        async move {
            let request = admin.request_post("/api/v1/admin/points/grant", &grant)?;
            call::<serde_json::Value>(request.header("idempotency-key", key), "granting points")
                .await
                .map(drop)
        }
    })
    .await
    .map(drop)
}

/// Sends `request` until it is answered with something other than "ask again later", and
/// parses a success.
async fn call<T: DeserializeOwned>(request: RequestBuilder, what: &str) -> anyhow::Result<T> {
    for _ in 0..MAX_TRIES {
        let again = request
            .try_clone()
            .with_context(|| format!("{what}: the request cannot be sent twice"))?;
        let answer = runner::send(again)
            .await
            .with_context(|| format!("{what}: no answer"))?;
        if answer.status == StatusCode::TOO_MANY_REQUESTS
            || answer.status == StatusCode::SERVICE_UNAVAILABLE
        {
            tokio::time::sleep(follow::retry_after(&answer).unwrap_or(RETRY_PAUSE)).await;
            continue;
        }
        if !answer.status.is_success() {
            anyhow::bail!(
                "{what}: HTTP {} ({})",
                answer.status,
                error_code(answer.status, &answer.body)
            );
        }
        return serde_json::from_slice(&answer.body)
            .with_context(|| format!("{what}: unexpected answer"));
    }
    anyhow::bail!("{what}: still refused after {MAX_TRIES} tries")
}

/// Runs `job(0..jobs)` with at most `width` in flight; results in job order. The first
/// error ends the setup (the other jobs are dropped with the set).
async fn each<T, F, Fut>(jobs: usize, width: usize, job: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..width.clamp(1, jobs.max(1)) {
        let (job, next) = (job.clone(), next.clone());
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= jobs {
                    return anyhow::Ok(done);
                }
                done.push((i, job(i).await?));
            }
        });
    }
    let mut slots: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        for (i, value) in joined.context("a setup task failed")?? {
            slots[i] = Some(value);
        }
    }
    // Every index below `jobs` was taken by exactly one task, and every task returned Ok.
    slots
        .into_iter()
        .collect::<Option<Vec<T>>>()
        .context("a setup job left no result")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_once_each_and_come_back_in_order() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let out = each(50, 7, move |i| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Relaxed);
                Ok(i * 2)
            }
        })
        .await
        .unwrap();
        assert_eq!(ran.load(Relaxed), 50);
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert!(each(0, 4, |i| async move { Ok(i) })
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn the_first_error_ends_the_setup() {
        let out = each(10, 3, |i| async move {
            if i == 4 {
                anyhow::bail!("refused")
            }
            Ok(i)
        })
        .await;
        assert!(out.is_err());
    }
}
