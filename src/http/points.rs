//! Loyalty points: the buyer's balance and ledger, and admins' grants and adjustments.
//! The use cases are `app::points`; earning and expiry run as jobs (`jobs::points`).

use super::error::ApiResult;
use super::extract::{AuthUser, IdempotencyHeader, Json, Page};
use super::page::PageView;
use super::state::AppState;
use crate::app::points::{Applied, OperationInput};
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::{PointsLedgerRecord, PointsOperationRecord};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ExpiringView {
    pub amount: i64,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
pub struct PointsView {
    pub balance: i64,
    /// Promised to open orders.
    pub held: i64,
    /// `balance - held`: what the buyer can use now.
    pub available: i64,
    /// Unheld points whose lots expire within 30 days (or are already due), soonest first.
    pub expiring: Vec<ExpiringView>,
}

#[derive(Serialize, ToSchema)]
pub struct PointsLedgerView {
    pub id: i64,
    pub kind: PointsKind,
    /// Positive, except a negative `adjust`.
    pub amount: i64,
    pub lot_id: Option<i64>,
    pub order_id: Option<i64>,
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<PointsLedgerRecord> for PointsLedgerView {
    fn from(r: PointsLedgerRecord) -> Self {
        PointsLedgerView {
            id: r.id,
            kind: r.kind,
            amount: r.amount,
            lot_id: r.lot_id,
            order_id: r.order_id,
            reason: r.reason,
            created_at: r.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The buyer.
    pub user_id: i64,
    /// 1 to 1,000,000,000 points.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub amount: i64,
    /// 1 to 200 characters, kept on the ledger row.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub reason: String,
    /// When the granted lot expires (in the future); default `points_valid_days` from now.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustPointsBody {
    pub user_id: i64,
    /// Signed, non-zero, at most 1,000,000,000 either way. A positive adjustment is a lot
    /// that never expires; a negative one takes from the lots that expire first, and never
    /// from points held for open orders.
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    pub amount: i64,
    /// 1 to 200 characters, kept on the ledger row.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub reason: String,
}

/// An applied grant or adjustment; a replay with the same key and body answers the same.
#[derive(Serialize, ToSchema)]
pub struct PointsOperationView {
    pub id: i64,
    pub user_id: i64,
    /// `grant` or `adjust`.
    pub kind: String,
    pub amount: i64,
    pub reason: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The account right after this operation.
    pub balance: i64,
    pub held: i64,
    pub available: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<PointsOperationRecord> for PointsOperationView {
    fn from(r: PointsOperationRecord) -> Self {
        PointsOperationView {
            id: r.id,
            user_id: r.user_id,
            kind: r.kind.as_str().to_owned(),
            amount: r.amount,
            reason: r.reason,
            expires_at: r.expires_at,
            balance: r.balance_after,
            held: r.held_after,
            available: r.balance_after - r.held_after,
            created_at: r.created_at,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/me/points", tag = "points", security(("bearer" = [])),
    responses((status = 200, body = PointsView), (status = 403, body = super::error::ErrorBody)))]
pub async fn my_points(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<PointsView>> {
    let summary = state.app.points.summary(&user.actor()).await?;
    let a = summary.account;
    Ok(axum::Json(PointsView {
        balance: a.balance,
        held: a.held,
        available: a.balance - a.held,
        expiring: summary
            .expiring
            .into_iter()
            .map(|e| ExpiringView {
                amount: e.amount,
                expires_at: e.expires_at,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/me/points/history", tag = "points", security(("bearer" = [])),
    params(super::extract::PageQuery),
    responses((status = 200, description = "the caller's points ledger, newest first", body = PageView<PointsLedgerView>),
        (status = 403, body = super::error::ErrorBody)))]
pub async fn my_points_history(
    State(state): State<AppState>,
    user: AuthUser,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<PointsLedgerView>>> {
    let history = state.app.points.history(&user.actor(), page).await?;
    Ok(axum::Json(history.into()))
}

/// 201 for a new operation, 200 for a replay.
fn applied(applied: Applied) -> Response {
    let status = if applied.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        axum::Json(PointsOperationView::from(applied.record)),
    )
        .into_response()
}

#[utoipa::path(post, path = "/api/v1/admin/points/grant", tag = "points", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$",
        description = "required, 1 to 128 printable ASCII characters; the same key and body replay the first result")),
    request_body = GrantBody,
    responses((status = 201, body = PointsOperationView), (status = 200, description = "a replay", body = PointsOperationView),
        (status = 400, description = "`idempotency_key_required`", body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, description = "no such buyer", body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`, `idempotency_mismatch`", body = super::error::ErrorBody)))]
pub async fn grant_points(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(body): Json<GrantBody>,
) -> ApiResult<Response> {
    let input = OperationInput {
        user_id: body.user_id,
        amount: body.amount,
        reason: body.reason,
        expires_at: body.expires_at,
    };
    let granted = state.app.points.grant(&user.actor(), &key, &input).await?;
    Ok(applied(granted))
}

#[utoipa::path(post, path = "/api/v1/admin/points/adjust", tag = "points", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$",
        description = "required, 1 to 128 printable ASCII characters; the same key and body replay the first result")),
    request_body = AdjustPointsBody,
    responses((status = 201, body = PointsOperationView), (status = 200, description = "a replay", body = PointsOperationView),
        (status = 400, description = "`idempotency_key_required`", body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, description = "no such buyer", body = super::error::ErrorBody),
        (status = 409, description = "`insufficient_points`: more than the buyer's unheld points", body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`, `idempotency_mismatch`", body = super::error::ErrorBody)))]
pub async fn adjust_points(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(body): Json<AdjustPointsBody>,
) -> ApiResult<Response> {
    let input = OperationInput {
        user_id: body.user_id,
        amount: body.amount,
        reason: body.reason,
        expires_at: None,
    };
    let adjusted = state.app.points.adjust(&user.actor(), &key, &input).await?;
    Ok(applied(adjusted))
}
