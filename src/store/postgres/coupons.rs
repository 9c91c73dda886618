//! Coupon campaigns on PostgreSQL. A claim is one transaction: the conditional count
//! (`UPDATE … WHERE issued < total_quantity AND <in window>`; concurrent claims queue on the
//! campaign's row lock and each re-checks the condition against the committed count), the
//! user coupon under `UNIQUE (campaign_id, user_id)` (a concurrent second claim of the same
//! buyer waits on the first's index entry, then does nothing), and the `coupon.issued` event,
//! appended last as `outbox::append` requires. A refused claim rolls everything back.

use super::conn::PgStore;
use super::outbox;
use crate::domain::events::{coupon_campaign_created, coupon_issued, CouponIssued};
use crate::domain::Timestamp;
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

async fn issue(pool: &PgPool, coupon: &NewUserCoupon, now: Timestamp) -> StoreResult<IssueOutcome> {
    let mut tx = pool.begin().await?;
    let counted: Option<(i64, i64)> = sqlx::query_as(sql::COUNT_CLAIM)
        .bind(coupon.campaign_id)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((issued, total)) = counted else {
        tx.rollback().await?;
        return refusal(pool, coupon.campaign_id, now).await;
    };
    let id: Option<i64> = sqlx::query_scalar(sql::INSERT_USER_COUPON)
        .bind(coupon.campaign_id)
        .bind(coupon.user_id)
        .bind(now.millis())
        .bind(coupon.expires_at.map(Timestamp::millis))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(id) = id else {
        // The count above is undone with everything else.
        tx.rollback().await?;
        return Ok(IssueOutcome::AlreadyIssued);
    };
    let row = sqlx::query(sql::USER_COUPON_BY_ID)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let record = coupon_from_row(&row)?;
    let event = coupon_issued(&CouponIssued {
        user_coupon_id: id,
        campaign_id: coupon.campaign_id,
        user_id: coupon.user_id,
        issued,
        issued_at: now,
        expires_at: coupon.expires_at,
    });
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(IssueOutcome::Issued {
        coupon: record,
        remaining: total - issued,
    })
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

    #[tracing::instrument(skip_all, fields(campaign_id = coupon.campaign_id, user_id = coupon.user_id))]
    async fn issue_coupon(
        &self,
        coupon: &NewUserCoupon,
        now: Timestamp,
    ) -> StoreResult<IssueOutcome> {
        issue(&self.pool, coupon, now).await
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
