//! First-come coupon campaigns: creating one (admin), reading it (anyone), claiming a
//! coupon (buyer) and the buyer's own coupons. Claims are decided by `app::coupons`.

use super::error::{ApiError, ApiResult};
use super::extract::{AuthUser, Json, Page, Path};
use super::page::PageView;
use super::state::AppState;
use crate::domain::coupon::{self, CouponStatus, Discount, DiscountType, IssueWindow};
use crate::domain::{DomainError, Timestamp, Won};
use crate::store::{CampaignRecord, NewCampaign, UserCouponRecord};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_CAMPAIGN_NAME_CHARS: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaignBody {
    /// 1 to 200 characters (surrounding spaces are trimmed).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    pub discount_type: DiscountType,
    /// Won off (`fixed`, 1 or more) or percent off (`percent`, 1 to 100).
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    pub discount_value: i64,
    /// Cap in won of a `percent` discount; optional there (no cap when absent) and refused
    /// for a `fixed` one.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    pub max_discount: Option<i64>,
    /// Orders below this many won get no discount.
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub min_order_amount: Option<i64>,
    /// Coupons the campaign hands out, first come first served: 1 to 10,000,000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub total_quantity: i64,
    /// When claims open (default: now).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issue_starts_at: Option<Timestamp>,
    /// When claims close (exclusive; default: never). Must be after `issue_starts_at`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issue_ends_at: Option<Timestamp>,
    /// Days an issued coupon stays valid (1 to 3650). Without it a coupon expires when the
    /// issue window closes, or never.
    #[schema(minimum = 1, maximum = 3650)]
    pub valid_days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
    pub total_quantity: i64,
    /// Coupons issued so far (never above `total_quantity`).
    pub issued: i64,
    #[schema(value_type = String, format = DateTime)]
    pub issue_starts_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issue_ends_at: Option<Timestamp>,
    pub valid_days: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
pub struct UserCouponView {
    pub id: i64,
    pub campaign_id: i64,
    /// `issued`, `held` (by an unpaid order), `used`, or `expired` (derived from
    /// `expires_at` when read).
    pub status: CouponStatus,
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: Timestamp,
    /// `null`: never expires.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The order holding or having used the coupon.
    pub order_id: Option<i64>,
    pub campaign_name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: Option<i64>,
}

impl From<CampaignRecord> for CampaignView {
    fn from(c: CampaignRecord) -> Self {
        CampaignView {
            id: c.id,
            name: c.name,
            discount_type: c.discount_type,
            discount_value: c.discount_value,
            max_discount: c.max_discount,
            min_order_amount: c.min_order_amount,
            total_quantity: c.total_quantity,
            issued: c.issued,
            issue_starts_at: c.issue_starts_at,
            issue_ends_at: c.issue_ends_at,
            valid_days: c.valid_days,
            created_at: c.created_at,
        }
    }
}

impl UserCouponView {
    fn at(c: UserCouponRecord, now: Timestamp) -> Self {
        UserCouponView {
            id: c.id,
            campaign_id: c.campaign_id,
            status: c.status.at(c.expires_at, now),
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            order_id: c.order_id,
            campaign_name: c.campaign_name,
            discount_type: c.discount_type,
            discount_value: c.discount_value,
            max_discount: c.max_discount,
            min_order_amount: c.min_order_amount,
        }
    }
}

/// Parses the body into a campaign; every bound is checked in `domain::coupon`.
fn new_campaign(body: NewCampaignBody, now: Timestamp) -> Result<NewCampaign, DomainError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_CAMPAIGN_NAME_CHARS {
        return Err(DomainError::new(
            "name",
            format!("must be 1 to {MAX_CAMPAIGN_NAME_CHARS} characters"),
        ));
    }
    let discount = Discount::new(body.discount_type, body.discount_value, body.max_discount)?;
    let max_discount = match discount {
        Discount::Percent { max, .. } => max.map(Won::get),
        Discount::Fixed(_) => None,
    };
    let min_order_amount = body
        .min_order_amount
        .map(|v| Won::new("min_order_amount", v).map(Won::get))
        .transpose()?;
    let window = IssueWindow::new(body.issue_starts_at.unwrap_or(now), body.issue_ends_at)?;
    Ok(NewCampaign {
        name: name.to_owned(),
        discount_type: body.discount_type,
        discount_value: body.discount_value,
        max_discount,
        min_order_amount,
        total_quantity: coupon::total_quantity(body.total_quantity)?,
        issue_starts_at: window.starts_at,
        issue_ends_at: window.ends_at,
        valid_days: body.valid_days.map(coupon::valid_days).transpose()?,
    })
}

#[utoipa::path(post, path = "/api/v1/coupons", tag = "coupons", security(("bearer" = [])), request_body = NewCampaignBody,
    responses((status = 201, body = CampaignView), (status = 403, body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`", body = super::error::ErrorBody)))]
pub async fn create_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewCampaignBody>,
) -> ApiResult<(StatusCode, axum::Json<CampaignView>)> {
    let coupons = &state.app.coupons;
    let created = coupons
        .create(&user.actor(), |now| new_campaign(body, now))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

#[utoipa::path(get, path = "/api/v1/coupons/{id}", tag = "coupons", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_campaign(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<CampaignView>> {
    let campaign = state
        .app
        .coupons
        .campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon campaign"))?;
    Ok(axum::Json(campaign.into()))
}

#[utoipa::path(post, path = "/api/v1/coupons/{id}/issue", tag = "coupons", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 201, description = "the buyer's new coupon", body = UserCouponView),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`coupon_sold_out`, `coupon_already_issued` or `coupon_not_issuable` (outside the issue window)", body = super::error::ErrorBody)))]
pub async fn issue_coupon(
    State(state): State<AppState>,
    user: AuthUser,
    Path(campaign_id): Path<i64>,
) -> ApiResult<(StatusCode, axum::Json<UserCouponView>)> {
    let coupons = &state.app.coupons;
    let coupon = coupons.issue(&user.actor(), campaign_id).await?;
    let view = UserCouponView::at(coupon, coupons.now());
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[utoipa::path(get, path = "/api/v1/me/coupons", tag = "coupons", security(("bearer" = [])), params(super::extract::PageQuery),
    responses((status = 200, description = "the caller's coupons, newest first", body = PageView<UserCouponView>),
        (status = 403, body = super::error::ErrorBody)))]
pub async fn my_coupons(
    State(state): State<AppState>,
    user: AuthUser,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<UserCouponView>>> {
    let coupons = &state.app.coupons;
    let mine = coupons.of_buyer(&user.actor(), page).await?;
    let now = coupons.now();
    Ok(axum::Json(PageView {
        items: mine
            .items
            .into_iter()
            .map(|c| UserCouponView::at(c, now))
            .collect(),
        page: mine.page,
        size: mine.size,
        total: mine.total,
    }))
}
