//! Coupon campaigns on PostgreSQL. A batch of claims is one transaction, a few set-based
//! statements per campaign (`claim_campaign`): the campaign's row lock (concurrent batches
//! queue on it, each reading the committed count after it), the claims that fit inserted
//! under `UNIQUE (campaign_id, user_id)`, the count moved by what was inserted, and the
//! batch's `coupon.issued` events, appended last as `outbox::append` requires. Campaigns go
//! in id order, so two batches take their locks in the same order.

use super::conn::{snapshot, PgStore};
use super::outbox;
use crate::domain::events::NewEvent;
use crate::domain::events::{coupon_campaign_created, coupon_issued, CouponIssued};
use crate::domain::Timestamp;
use crate::store::coupons::{claim_order, decided_or_refused};
use crate::store::rows::{campaign_from_row, coupon_from_row};
use crate::store::{
    sql, CampaignRecord, CouponAudit, CouponStore, IssueOutcome, NewCampaign, NewUserCoupon, Page,
    PageRequest, StoreResult, UserCouponRecord,
};
use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

async fn insert_campaign(
    pool: &PgPool,
    c: &NewCampaign,
    now: Timestamp,
) -> StoreResult<CampaignRecord> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(sql::INSERT_CAMPAIGN)
        .bind(&c.name)
        .bind(c.discount_type.as_str())
        .bind(c.discount_value)
        .bind(c.max_discount)
        .bind(c.min_order_amount)
        .bind(c.total_quantity)
        .bind(c.issue_starts_at.millis())
        .bind(c.issue_ends_at.map(Timestamp::millis))
        .bind(c.valid_days)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await?;
    let campaign = campaign_from_row(&row)?;
    let event = coupon_campaign_created(campaign.id, campaign.total_quantity);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(campaign)
}

async fn campaign(pool: &PgPool, id: i64) -> StoreResult<Option<CampaignRecord>> {
    let row = sqlx::query(sql::CAMPAIGN_BY_ID)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(campaign_from_row).transpose()
}

async fn issue(
    pool: &PgPool,
    coupons: &[NewUserCoupon],
    now: Timestamp,
) -> StoreResult<Vec<IssueOutcome>> {
    let mut tx = pool.begin().await?;
    let mut decided: Vec<Option<IssueOutcome>> = vec![None; coupons.len()];
    let mut events = Vec::new();
    let order = claim_order(coupons);
    for campaign in order.chunk_by(|a, b| coupons[*a].campaign_id == coupons[*b].campaign_id) {
        let claims: Vec<(usize, &NewUserCoupon)> =
            campaign.iter().map(|&i| (i, &coupons[i])).collect();
        events.extend(claim_campaign(&mut tx, &claims, &mut decided, now).await?);
    }
    outbox::append(&mut tx, &events, now).await?;
    tx.commit().await?;
    decided_or_refused(coupons, decided, now, |id| campaign(pool, id)).await
}

/// The claims of one campaign, in user order, with a handful of statements whatever their
/// number: the campaign's row lock and count, the buyers of them who already hold one,
/// the newcomers that fit inserted in one statement, and the count moved by what was
/// inserted. Each claim ends as it would alone: sold out once the count is full (left
/// `None` for the caller's refusal read), already issued for a holder, else issued. The
/// row lock keeps every other claim of the campaign out until the commit. Returns the
/// `coupon.issued` events.
async fn claim_campaign(
    tx: &mut PgConnection,
    claims: &[(usize, &NewUserCoupon)],
    decided: &mut [Option<IssueOutcome>],
    now: Timestamp,
) -> StoreResult<Vec<NewEvent>> {
    let Some(&(_, first)) = claims.first() else {
        return Ok(Vec::new());
    };
    let campaign_id = first.campaign_id;
    let counted: Option<(i64, i64)> = sqlx::query_as(sql::LOCK_CLAIMABLE_CAMPAIGN)
        .bind(campaign_id)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((issued, total)) = counted else {
        return Ok(Vec::new());
    };
    let users: Vec<i64> = claims.iter().map(|(_, c)| c.user_id).collect();
    let holders: HashSet<i64> = sqlx::query_scalar(sql::HOLDERS_AMONG)
        .bind(campaign_id)
        .bind(&users)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let mut room = total - issued;
    let mut taking: Vec<(usize, &NewUserCoupon)> = Vec::new();
    let mut seen = HashSet::new();
    for &(i, coupon) in claims {
        if room == 0 {
            continue;
        }
        if holders.contains(&coupon.user_id) || !seen.insert(coupon.user_id) {
            decided[i] = Some(IssueOutcome::AlreadyIssued);
            continue;
        }
        taking.push((i, coupon));
        room -= 1;
    }
    if taking.is_empty() {
        return Ok(Vec::new());
    }
    let takers: Vec<i64> = taking.iter().map(|(_, c)| c.user_id).collect();
    let expiries: Vec<Option<i64>> = taking
        .iter()
        .map(|(_, c)| c.expires_at.map(Timestamp::millis))
        .collect();
    let mut inserted: Vec<(i64, i64)> = sqlx::query_as(sql::INSERT_USER_COUPONS)
        .bind(campaign_id)
        .bind(&takers)
        .bind(now.millis())
        .bind(&expiries)
        .fetch_all(&mut *tx)
        .await?;
    inserted.sort_unstable();
    sqlx::query(sql::COUNT_CLAIMS)
        .bind(campaign_id)
        .bind(inserted.len() as i64)
        .execute(&mut *tx)
        .await?;
    let ids: Vec<i64> = inserted.iter().map(|(id, _)| *id).collect();
    let rows = sqlx::query(sql::USER_COUPONS_BY_IDS)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    let mut records: HashMap<i64, UserCouponRecord> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let record = coupon_from_row(row)?;
        records.insert(record.user_id, record);
    }
    let mut events = Vec::with_capacity(inserted.len());
    let mut count = issued;
    for (i, coupon) in taking {
        let Some(record) = records.remove(&coupon.user_id) else {
            // Inserted by nobody we know of, yet there: the unique key's answer stands.
            decided[i] = Some(IssueOutcome::AlreadyIssued);
            continue;
        };
        count += 1;
        events.push(coupon_issued(&CouponIssued {
            user_coupon_id: record.id,
            campaign_id,
            user_id: coupon.user_id,
            issued: count,
            issued_at: now,
            expires_at: coupon.expires_at,
        }));
        decided[i] = Some(IssueOutcome::Issued {
            coupon: record,
            remaining: total - count,
        });
    }
    Ok(events)
}

async fn user_coupons(
    pool: &PgPool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<UserCouponRecord>> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sql::USER_COUPONS_PAGE)
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_USER_COUPONS)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(coupon_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}

async fn coupon_audit(pool: &PgPool) -> StoreResult<Vec<CouponAudit>> {
    let rows: Vec<(i64, i64, i64, i64, i64)> =
        sqlx::query_as(sql::COUPON_AUDIT).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(
            |(campaign_id, total_quantity, issued, rows, duplicates)| CouponAudit {
                campaign_id,
                total_quantity,
                issued,
                rows,
                duplicates,
            },
        )
        .collect())
}

#[async_trait]
impl CouponStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn insert_campaign(
        &self,
        campaign: &NewCampaign,
        now: Timestamp,
    ) -> StoreResult<CampaignRecord> {
        insert_campaign(&self.pool, campaign, now).await
    }

    #[tracing::instrument(skip_all, fields(campaign_id = id))]
    async fn campaign(&self, id: i64) -> StoreResult<Option<CampaignRecord>> {
        campaign(&self.pool, id).await
    }

    #[tracing::instrument(skip_all, fields(claims = coupons.len()))]
    async fn issue_coupons(
        &self,
        coupons: &[NewUserCoupon],
        now: Timestamp,
    ) -> StoreResult<Vec<IssueOutcome>> {
        issue(&self.pool, coupons, now).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn user_coupons(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<UserCouponRecord>> {
        user_coupons(&self.pool, user_id, page).await
    }

    #[tracing::instrument(skip_all, fields(campaign_id = campaign_id))]
    async fn coupon_holders(&self, campaign_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::COUPON_HOLDERS)
            .bind(campaign_id)
            .fetch_all(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn coupon_audit(&self) -> StoreResult<Vec<CouponAudit>> {
        coupon_audit(&self.pool).await
    }
}
