//! First-come coupon campaigns ([`CouponStore`], used by `app::coupons`), with the rows
//! they read and write and the campaign terms as stored.

use super::error::{StoreError, StoreResult};
use super::page::{Page, PageRequest};
use crate::domain::allocation::CouponState;
use crate::domain::coupon::{CouponStatus, CouponTerms, Discount, DiscountType, IssueWindow};
use crate::domain::{DomainError, Timestamp, Won};
use async_trait::async_trait;
use std::collections::HashMap;

/// The database decides every claim: one transaction makes the conditional count
/// (`issued < total_quantity`, inside the issue window), inserts the user coupon under
/// `UNIQUE (campaign_id, user_id)` and appends `coupon.issued`; a refused claim writes
/// nothing.
#[async_trait]
pub trait CouponStore: Send + Sync {
    /// Creates the campaign with a `coupon.campaign_created` event.
    async fn insert_campaign(
        &self,
        campaign: &NewCampaign,
        now: Timestamp,
    ) -> StoreResult<CampaignRecord>;
    async fn campaign(&self, id: i64) -> StoreResult<Option<CampaignRecord>>;
    /// Decides each claim as if alone — a coupon of `campaign_id` for `user_id` at `now`,
    /// or why not, a refused claim changing nothing — all in one transaction (group
    /// commit: one durable write for a burst of claims). Claims are applied in
    /// `(campaign_id, user_id)` order, so two batches never wait on each other's locks in
    /// opposite orders. One outcome per claim, in the order given.
    async fn issue_coupons(
        &self,
        coupons: &[NewUserCoupon],
        now: Timestamp,
    ) -> StoreResult<Vec<IssueOutcome>>;
    /// The buyer's coupons, newest first.
    async fn user_coupons(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<UserCouponRecord>>;
    /// Ids of the buyers holding a coupon of the campaign (to reset the Redis gate).
    async fn coupon_holders(&self, campaign_id: i64) -> StoreResult<Vec<i64>>;
    /// Every campaign's `issued` beside its rows, ascending by id.
    async fn coupon_audit(&self) -> StoreResult<Vec<CouponAudit>>;
}

/// The order [`CouponStore::issue_coupons`] applies claims in: indices of `coupons` by
/// `(campaign_id, user_id)`.
pub(crate) fn claim_order(coupons: &[NewUserCoupon]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..coupons.len()).collect();
    order.sort_by_key(|&i| (coupons[i].campaign_id, coupons[i].user_id));
    order
}

/// The outcomes of a claim batch: those decided in its transaction, and for each claim that
/// counted nothing (`None`) the refusal its campaign explains, read after the commit by
/// `read`, once per campaign. Terms never change, so the window read then is the one the
/// claim saw: no campaign, outside its window, or sold out.
pub(crate) async fn decided_or_refused<F, Fut>(
    coupons: &[NewUserCoupon],
    decided: Vec<Option<IssueOutcome>>,
    now: Timestamp,
    mut read: F,
) -> StoreResult<Vec<IssueOutcome>>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = StoreResult<Option<CampaignRecord>>>,
{
    let mut refusals: HashMap<i64, IssueOutcome> = HashMap::new();
    let mut outcomes = Vec::with_capacity(coupons.len());
    for (coupon, outcome) in coupons.iter().zip(decided) {
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => match refusals.get(&coupon.campaign_id) {
                Some(refusal) => refusal.clone(),
                None => {
                    let refusal = match read(coupon.campaign_id).await? {
                        None => IssueOutcome::UnknownCampaign,
                        Some(c) if c.window().contains(now) => IssueOutcome::SoldOut,
                        Some(_) => IssueOutcome::NotIssuable,
                    };
                    refusals.insert(coupon.campaign_id, refusal.clone());
                    refusal
                }
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A first-come coupon campaign to create; its values were checked by `domain::coupon`.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
    pub total_quantity: i64,
    pub issue_starts_at: Timestamp,
    pub issue_ends_at: Option<Timestamp>,
    pub valid_days: Option<i64>,
}

/// A coupon campaign: its terms never change after creation; `issued` counts the user
/// coupons handed out (`issued <= total_quantity`, enforced by a CHECK).
#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
    pub total_quantity: i64,
    pub issued: i64,
    pub issue_starts_at: Timestamp,
    pub issue_ends_at: Option<Timestamp>,
    pub valid_days: Option<i64>,
    pub created_at: Timestamp,
}

impl CampaignRecord {
    pub fn window(&self) -> IssueWindow {
        IssueWindow {
            starts_at: self.issue_starts_at,
            ends_at: self.issue_ends_at,
        }
    }
}

/// A user coupon to write: who, from which campaign, and when it expires.
#[derive(Debug, Clone)]
pub struct NewUserCoupon {
    pub campaign_id: i64,
    pub user_id: i64,
    pub expires_at: Option<Timestamp>,
}

/// One user coupon with the name and terms of its campaign.
#[derive(Debug, Clone)]
pub struct UserCouponRecord {
    pub id: i64,
    pub campaign_id: i64,
    pub user_id: i64,
    /// As stored (`issued`, `held`, `used`); `expired` is derived when shown.
    pub status: CouponStatus,
    pub order_id: Option<i64>,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub campaign_name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
}

impl UserCouponRecord {
    /// The coupon as order placement weighs it: whose it is, whether it is free, when it
    /// expires and what it takes off.
    pub fn placement_state(&self) -> StoreResult<CouponState> {
        let terms = coupon_terms(
            self.discount_type,
            self.discount_value,
            self.max_discount,
            self.min_order_amount,
        )
        .map_err(|e| StoreError::Corrupt(format!("user coupon {}: {e}", self.id)))?;
        Ok(CouponState {
            user_id: self.user_id,
            free: self.status == CouponStatus::Issued,
            expires_at: self.expires_at,
            terms,
        })
    }
}

/// A campaign's terms from its stored columns.
pub fn coupon_terms(
    discount_type: DiscountType,
    discount_value: i64,
    max_discount: Option<i64>,
    min_order_amount: Option<i64>,
) -> Result<CouponTerms, DomainError> {
    Ok(CouponTerms {
        discount: Discount::new(discount_type, discount_value, max_discount)?,
        min_order_amount: min_order_amount
            .map(|m| Won::new("min_order_amount", m))
            .transpose()?,
    })
}

/// What one claim of a coupon did.
#[derive(Debug, Clone)]
pub enum IssueOutcome {
    /// Issued; `remaining` is what the campaign has left after it.
    Issued {
        coupon: UserCouponRecord,
        remaining: i64,
    },
    UnknownCampaign,
    /// Outside the campaign's issue window.
    NotIssuable,
    SoldOut,
    /// The buyer already holds a coupon of this campaign.
    AlreadyIssued,
}

/// One campaign's count beside its rows (found by `stampede verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponAudit {
    pub campaign_id: i64,
    pub total_quantity: i64,
    pub issued: i64,
    /// `user_coupons` rows of the campaign.
    pub rows: i64,
    /// Coupons held beyond one per buyer (the UNIQUE constraint keeps it at 0).
    pub duplicates: i64,
}
