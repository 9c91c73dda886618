//! Coupon campaigns on SQLite. A batch of claims is one write transaction (`BEGIN
//! IMMEDIATE`, so batches are serialised by SQLite's single writer); each claim in it is the
//! conditional count, the user coupon under `UNIQUE (campaign_id, user_id)` and its
//! `coupon.issued` event — or, when the buyer already holds one, the count taken back, so a
//! refused claim leaves nothing behind. Why a claim was refused is read afterwards on the
//! reader pool.

use super::conn::{snapshot, SqliteStore};
use super::outbox;
use crate::domain::events::{coupon_campaign_created, coupon_issued, CouponIssued};
use crate::domain::Timestamp;
use crate::store::coupons::{claim_order, decided_or_refused};
use crate::store::rows::{campaign_from_row, coupon_from_row};
use crate::store::{
    sql, CampaignRecord, CouponAudit, CouponStore, IssueOutcome, NewCampaign, NewUserCoupon, Page,
    PageRequest, StoreResult, UserCouponRecord,
};
use async_trait::async_trait;

#[async_trait]
impl CouponStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn insert_campaign(
        &self,
        campaign: &NewCampaign,
        now: Timestamp,
    ) -> StoreResult<CampaignRecord> {
        let c = campaign;
        let mut tx = self.write_tx().await?;
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

    #[tracing::instrument(skip_all, fields(campaign_id = id))]
    async fn campaign(&self, id: i64) -> StoreResult<Option<CampaignRecord>> {
        let row = sqlx::query(sql::CAMPAIGN_BY_ID)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(campaign_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(claims = coupons.len()))]
    async fn issue_coupons(
        &self,
        coupons: &[NewUserCoupon],
        now: Timestamp,
    ) -> StoreResult<Vec<IssueOutcome>> {
        let mut tx = self.write_tx().await?;
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
            events.push(coupon_issued(&CouponIssued {
                user_coupon_id: id,
                campaign_id: coupon.campaign_id,
                user_id: coupon.user_id,
                issued,
                issued_at: now,
                expires_at: coupon.expires_at,
            }));
            let row = sqlx::query(sql::USER_COUPON_BY_ID)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            decided[i] = Some(IssueOutcome::Issued {
                coupon: coupon_from_row(&row)?,
                remaining: total - issued,
            });
        }
        outbox::append(&mut tx, &events, now).await?;
        tx.commit().await?;
        decided_or_refused(coupons, decided, now, |id| self.campaign(id)).await
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn user_coupons(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<UserCouponRecord>> {
        let mut tx = snapshot(&self.reader).await?;
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

    #[tracing::instrument(skip_all, fields(campaign_id = campaign_id))]
    async fn coupon_holders(&self, campaign_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::COUPON_HOLDERS)
            .bind(campaign_id)
            .fetch_all(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn coupon_audit(&self) -> StoreResult<Vec<CouponAudit>> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(sql::COUPON_AUDIT)
            .fetch_all(&self.reader)
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
}
