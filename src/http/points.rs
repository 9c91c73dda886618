//! Loyalty points: the buyer's balance and ledger, and admins' grants and adjustments.
//! Earning and expiry run in the background (`crate::points`).

use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, IdempotencyHeader, Json, Page};
use super::PageView;
use crate::domain::points::{Points, PointsDelta, PointsKind, Reason};
use crate::domain::{DomainError, IdempotencyKey, Role, Timestamp};
use crate::server::AppState;
use crate::store::{
    NewPointsOperation, PointsLedgerRecord, PointsOperationKind, PointsOperationOutcome,
    PointsOperationRecord,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// How far ahead `GET /me/points` lists points about to expire.
pub const EXPIRING_HORIZON_DAYS: u64 = 30;
const SECS_PER_DAY: u64 = 86_400;

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
    pub amount: i64,
    /// 1 to 200 characters, kept on the ledger row.
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
    pub amount: i64,
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
    user.require(&[Role::Buyer])?;
    let horizon = Timestamp::now().plus_secs(EXPIRING_HORIZON_DAYS * SECS_PER_DAY);
    let summary = state.store.points_summary(user.id(), horizon).await?;
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
    user.require(&[Role::Buyer])?;
    Ok(axum::Json(
        state.store.points_history(user.id(), page).await?.into(),
    ))
}

/// Hex SHA-256 of the request as sent; the reason goes last, so no separator is ambiguous.
fn request_hash(
    kind: PointsOperationKind,
    user_id: i64,
    amount: i64,
    expires_at: Option<Timestamp>,
    reason: &Reason,
) -> String {
    let expires = expires_at.map_or_else(|| "-".to_owned(), |t| t.millis().to_string());
    let canonical = format!(
        "{}:{user_id}:{amount}:{expires}:{}",
        kind.as_str(),
        reason.as_str()
    );
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 201 for a new operation, 200 for a replay, the refusal's error otherwise.
async fn apply(state: &AppState, operation: NewPointsOperation) -> ApiResult<Response> {
    let outcome = state
        .store
        .apply_points_operation(&operation, Timestamp::now())
        .await?;
    match outcome {
        PointsOperationOutcome::Done(record) => {
            let amount = record.amount.unsigned_abs();
            if record.amount > 0 {
                state.metrics.points_granted.inc_by(amount);
            } else {
                state.metrics.points_deducted.inc_by(amount);
            }
            state.outbox_wake.notify_one();
            let view = PointsOperationView::from(record);
            Ok((StatusCode::CREATED, axum::Json(view)).into_response())
        }
        PointsOperationOutcome::Replayed(record) => Ok((
            StatusCode::OK,
            axum::Json(PointsOperationView::from(record)),
        )
            .into_response()),
        PointsOperationOutcome::Mismatch => Err(ApiError::new(
            ErrorCode::IdempotencyMismatch,
            "this Idempotency-Key was used with a different request body",
        )),
        PointsOperationOutcome::UnknownUser => Err(ApiError::not_found("buyer")),
        PointsOperationOutcome::Insufficient => Err(ApiError::new(
            ErrorCode::InsufficientPoints,
            "the buyer's points not held for open orders are fewer than that",
        )),
    }
}

fn operation(
    admin: &AuthUser,
    key: &IdempotencyKey,
    (kind, user_id, amount): (PointsOperationKind, i64, i64),
    reason: &Reason,
    (requested, effective): (Option<Timestamp>, Option<Timestamp>),
) -> NewPointsOperation {
    NewPointsOperation {
        admin_id: admin.id(),
        idempotency_key: key.as_str().to_owned(),
        request_hash: request_hash(kind, user_id, amount, requested, reason),
        user_id,
        kind,
        amount,
        reason: reason.as_str().to_owned(),
        expires_at: effective,
    }
}

#[utoipa::path(post, path = "/api/v1/admin/points/grant", tag = "points", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "required; the same key and body replay the first result")),
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
    user.require(&[Role::Admin])?;
    let amount = Points::new("amount", body.amount)?;
    let reason = Reason::parse(&body.reason)?;
    let now = Timestamp::now();
    if body.expires_at.is_some_and(|t| t <= now) {
        return Err(DomainError::new("expires_at", "must be in the future").into());
    }
    let valid_secs = state.config.points_valid_days.saturating_mul(SECS_PER_DAY);
    let effective = body.expires_at.unwrap_or_else(|| now.plus_secs(valid_secs));
    let what = (PointsOperationKind::Grant, body.user_id, amount.get());
    let expiry = (body.expires_at, Some(effective));
    apply(&state, operation(&user, &key, what, &reason, expiry)).await
}

#[utoipa::path(post, path = "/api/v1/admin/points/adjust", tag = "points", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "required; the same key and body replay the first result")),
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
    user.require(&[Role::Admin])?;
    let amount = PointsDelta::new("amount", body.amount)?;
    let reason = Reason::parse(&body.reason)?;
    let what = (PointsOperationKind::Adjust, body.user_id, amount.get());
    apply(&state, operation(&user, &key, what, &reason, (None, None))).await
}
