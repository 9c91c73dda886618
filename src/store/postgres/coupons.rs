//! Coupon campaigns on PostgreSQL. A claim is one transaction: the conditional count
//! (`UPDATE … WHERE issued < total_quantity AND <in window>`; concurrent claims queue on the
//! campaign's row lock and each re-checks the condition against the committed count), the
//! user coupon under `UNIQUE (campaign_id, user_id)` (a concurrent second claim of the same
//! buyer waits on the first's index entry, then does nothing), and the `coupon.issued` event,
//! appended last as `outbox::append` requires. A refused claim rolls everything back.

use super::{outbox, ts, PgStore};
use crate::domain::coupon::{CouponStatus, DiscountType};
use crate::domain::events::{coupon_campaign_created, coupon_issued, CouponIssued};
use crate::domain::Timestamp;
use crate::store::{
    CampaignRecord, CouponAudit, CouponStore, IssueOutcome, NewCampaign, NewUserCoupon, Page,
    PageRequest, StoreError, StoreResult, UserCouponRecord,
};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

const CAMPAIGN_COLUMNS: &str = "id, name, discount_type, discount_value, max_discount, \
     min_order_amount, total_quantity, issued, issue_starts_at, issue_ends_at, valid_days, \
     created_at";

/// A user coupon (alias `u`) with its campaign's name and terms (alias `c`).
pub(super) const SELECT_COUPON: &str =
    "SELECT u.id, u.campaign_id, u.user_id, u.status, u.order_id, \
         u.issued_at, u.expires_at, c.name, c.discount_type, c.discount_value, c.max_discount, \
         c.min_order_amount \
     FROM user_coupons u JOIN coupon_campaigns c ON c.id = u.campaign_id";

fn discount_type(raw: &str) -> StoreResult<DiscountType> {
    DiscountType::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("discount type {raw:?}")))
}

fn opt_ts(row: &PgRow, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

fn campaign_from_row(row: &PgRow) -> StoreResult<CampaignRecord> {
    Ok(CampaignRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        discount_type: discount_type(&row.try_get::<String, _>("discount_type")?)?,
        discount_value: row.try_get("discount_value")?,
        max_discount: row.try_get("max_discount")?,
        min_order_amount: row.try_get("min_order_amount")?,
        total_quantity: row.try_get("total_quantity")?,
        issued: row.try_get("issued")?,
        issue_starts_at: ts(row, "issue_starts_at")?,
        issue_ends_at: opt_ts(row, "issue_ends_at")?,
        valid_days: row.try_get("valid_days")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(super) fn coupon_from_row(row: &PgRow) -> StoreResult<UserCouponRecord> {
    let status: String = row.try_get("status")?;
    Ok(UserCouponRecord {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        user_id: row.try_get("user_id")?,
        status: CouponStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("coupon status {status:?}")))?,
        order_id: row.try_get("order_id")?,
        issued_at: ts(row, "issued_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        campaign_name: row.try_get("name")?,
        discount_type: discount_type(&row.try_get::<String, _>("discount_type")?)?,
        discount_value: row.try_get("discount_value")?,
        max_discount: row.try_get("max_discount")?,
        min_order_amount: row.try_get("min_order_amount")?,
    })
}

async fn insert_campaign(
    pool: &PgPool,
    c: &NewCampaign,
    now: Timestamp,
) -> StoreResult<CampaignRecord> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO coupon_campaigns \
             (name, discount_type, discount_value, max_discount, min_order_amount, \
              total_quantity, issued, issue_starts_at, issue_ends_at, valid_days, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10) \
         RETURNING {CAMPAIGN_COLUMNS}"
    ))
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
    let row = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns WHERE id = $1"
    ))
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
    let counted: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE coupon_campaigns SET issued = issued + 1 \
         WHERE id = $1 AND issued < total_quantity AND issue_starts_at <= $2 \
           AND (issue_ends_at IS NULL OR issue_ends_at > $2) \
         RETURNING issued, total_quantity",
    )
    .bind(coupon.campaign_id)
    .bind(now.millis())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((issued, total)) = counted else {
        tx.rollback().await?;
        return refusal(pool, coupon.campaign_id, now).await;
    };
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO user_coupons \
             (campaign_id, user_id, status, issued_at, expires_at, updated_at) \
         VALUES ($1, $2, 'issued', $3, $4, $3) \
         ON CONFLICT (campaign_id, user_id) DO NOTHING \
         RETURNING id",
    )
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
    let row = sqlx::query(&format!("{SELECT_COUPON} WHERE u.id = $1"))
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
    let rows = sqlx::query(&format!(
        "{SELECT_COUPON} WHERE u.user_id = $1 ORDER BY u.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(user_id)
    .bind(page.size)
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_coupons WHERE user_id = $1")
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

/// One statement, so the count and the rows come from one snapshot.
async fn coupon_audit(pool: &PgPool) -> StoreResult<Vec<CouponAudit>> {
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT c.id, c.total_quantity, c.issued, \
             (SELECT COUNT(*) FROM user_coupons u WHERE u.campaign_id = c.id), \
             (SELECT COUNT(*) - COUNT(DISTINCT u.user_id) FROM user_coupons u \
              WHERE u.campaign_id = c.id) \
         FROM coupon_campaigns c ORDER BY c.id",
    )
    .fetch_all(pool)
    .await?;
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
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM user_coupons WHERE campaign_id = $1 ORDER BY user_id",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn coupon_audit(&self) -> StoreResult<Vec<CouponAudit>> {
        coupon_audit(&self.pool).await
    }
}
