//! Coupon campaigns on PostgreSQL. A batch of claims is one transaction; each claim in it is
//! the conditional count (`UPDATE … WHERE issued < total_quantity AND <in window>`;
//! concurrent batches queue on the campaign's row lock and each re-checks the condition
//! against the committed count), the user coupon under `UNIQUE (campaign_id, user_id)` (a
//! concurrent claim of the same buyer waits on the other's index entry, then does nothing,
//! and its count is taken back), and the batch's `coupon.issued` events, appended last as
//! `outbox::append` requires. Claims go in `(campaign_id, user_id)` order, so two batches
//! take their locks in the same order.

use super::conn::PgStore;
use super::outbox;
use crate::domain::events::{coupon_campaign_created, coupon_issued, CouponIssued};
use crate::domain::Timestamp;
use crate::store::coupons::claim_order;
use crate::store::rows::{campaign_from_row, coupon_from_row};
use crate::store::{
    sql, CampaignRecord, CouponAudit, CouponStore, IssueOutcome, NewCampaign, NewUserCoupon, Page,
    PageRequest, StoreResult, UserCouponRecord,
};
use async_trait::async_trait;
use sqlx::postgres::PgPool;

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

/// Why a claim that counted nothing was refused, read after its rollback. Terms never
/// change, so the window read now is the one the claim saw.
async fn refusal(pool: &PgPool, campaign_id: i64, now: Timestamp) -> StoreResult<IssueOutcome> {
    let Some(campaign) = campaign(pool, campaign_id).await? else {
        return Ok(IssueOutcome::UnknownCampaign);
    };
    Ok(if campaign.window().contains(now) {
        IssueOutcome::SoldOut
    } else {
        IssueOutcome::NotIssuable
    })
}

async fn issue(
    pool: &PgPool,
    coupons: &[NewUserCoupon],
    now: Timestamp,
) -> StoreResult<Vec<IssueOutcome>> {
    let mut tx = pool.begin().await?;
    let mut decided: Vec<Option<IssueOutcome>> = vec![None; coupons.len()];
    let mut events = Vec::new();
    for i in claim_order(coupons) {
        let coupon = &coupons[i];
        let counted: Option<(i64, i64)> = sqlx::query_as(sql::COUNT_CLAIM)
            .bind(coupon.campaign_id)
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((issued, total)) = counted else {
            // Refused; why is read after the commit.
            continue;
        };
        let id: Option<i64> = sqlx::query_scalar(sql::INSERT_USER_COUPON)
            .bind(coupon.campaign_id)
            .bind(coupon.user_id)
            .bind(now.millis())
            .bind(coupon.expires_at.map(Timestamp::millis))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            sqlx::query(sql::UNCOUNT_CLAIM)
                .bind(coupon.campaign_id)
                .execute(&mut *tx)
                .await?;
            decided[i] = Some(IssueOutcome::AlreadyIssued);
            continue;
        };
        let row = sqlx::query(sql::USER_COUPON_BY_ID)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        decided[i] = Some(IssueOutcome::Issued {
            coupon: coupon_from_row(&row)?,
            remaining: total - issued,
        });
        events.push(coupon_issued(&CouponIssued {
            user_coupon_id: id,
            campaign_id: coupon.campaign_id,
            user_id: coupon.user_id,
            issued,
            issued_at: now,
            expires_at: coupon.expires_at,
        }));
    }
    outbox::append(&mut tx, &events, now).await?;
    tx.commit().await?;
    let mut outcomes = Vec::with_capacity(coupons.len());
    for (coupon, outcome) in coupons.iter().zip(decided) {
        outcomes.push(match outcome {
            Some(outcome) => outcome,
            None => refusal(pool, coupon.campaign_id, now).await?,
        });
    }
    Ok(outcomes)
}

async fn user_coupons(
    pool: &PgPool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<UserCouponRecord>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(sql::USER_COUPONS_PAGE)
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *conn)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_USER_COUPONS)
        .bind(user_id)
        .fetch_one(&mut *conn)
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
