//! Sellers' fulfilment: preparing, shipping and delivering partner orders, cancelling one
//! before it ships or taking one back after the purchase was confirmed, and a partner's
//! orders. The use case is `app::fulfilment`.

use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, Json, Page, Path};
use super::order_view::PartnerOrderView;
use super::page::PageView;
use super::state::AppState;
use crate::app::fulfilment::StepInput;
use crate::domain::fulfilment::PartnerOrderStatus;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipBody {
    /// Who carries it: 1 to 100 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub carrier: String,
    /// 1 to 64 printable ASCII characters without spaces.
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]+$")]
    pub tracking_number: String,
}

async fn step(
    state: &AppState,
    user: &AuthUser,
    id: i64,
    input: StepInput<'_>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    let moved = state
        .app
        .fulfilment
        .advance(&user.actor(), id, input)
        .await?;
    Ok(axum::Json(moved.into()))
}

#[utoipa::path(post, path = "/api/v1/partner-orders/{id}/prepare", tag = "fulfilment", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "`paid → preparing`", body = PartnerOrderView),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner order, or another partner's", body = super::error::ErrorBody),
        (status = 409, description = "`invalid_transition`: the partner order is not `paid`", body = super::error::ErrorBody)))]
pub async fn prepare(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    step(&state, &user, id, StepInput::Prepare).await
}

#[utoipa::path(post, path = "/api/v1/partner-orders/{id}/ship", tag = "fulfilment", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ShipBody,
    responses((status = 200, description = "`preparing → shipped`", body = PartnerOrderView),
        (status = 400, description = "`malformed_json`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner order, or another partner's", body = super::error::ErrorBody),
        (status = 409, description = "`invalid_transition`: the partner order is not `preparing`", body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`: carrier or tracking number", body = super::error::ErrorBody)))]
pub async fn ship(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<ShipBody>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    let input = StepInput::Ship {
        carrier: &body.carrier,
        tracking_number: &body.tracking_number,
    };
    step(&state, &user, id, input).await
}

#[utoipa::path(post, path = "/api/v1/partner-orders/{id}/deliver", tag = "fulfilment", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, description = "`shipped → delivered`", body = PartnerOrderView),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner order, or another partner's", body = super::error::ErrorBody),
        (status = 409, description = "`invalid_transition`: the partner order is not `shipped`", body = super::error::ErrorBody)))]
pub async fn deliver(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    step(&state, &user, id, StepInput::Deliver).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelPartBody {
    /// Why it is cancelled, shown to the buyer: 1 to 500 characters, no control characters
    /// but line breaks.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/partner-orders/{id}/cancel", tag = "fulfilment", security(("bearer" = [])), params(("id" = i64, Path)), request_body = CancelPartBody,
    responses((status = 200, description = "`paid | preparing → cancelled`: its stock returned, its points share refunded, its `payable` refunded through the gateway; the order goes on (or is refunded when no part is left)", body = PartnerOrderView),
        (status = 400, description = "`malformed_json`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner order, or another partner's", body = super::error::ErrorBody),
        (status = 409, description = "`invalid_transition`: the partner order has shipped, was delivered or is no longer paid", body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`: reason", body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<CancelPartBody>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    let (part, _) = state
        .app
        .fulfilment
        .cancel(&user.actor(), id, &body.reason)
        .await?;
    Ok(axum::Json(part.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnPartBody {
    /// Why the seller takes it back, shown to the buyer: 1 to 500 characters, no control
    /// characters but line breaks.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/partner-orders/{id}/return", tag = "fulfilment", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ReturnPartBody,
    responses((status = 200, description = "`confirmed → refunded` (a return after the purchase was confirmed; the order stays `confirmed`): its `payable` refunded through the gateway, its points share refunded, the points its purchase earned taken back pro rata while unspent, a negative line on the seller's next statement. No stock moves: the seller restocks through the stock API", body = PartnerOrderView),
        (status = 400, description = "`malformed_json`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not a seller or admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner order, or another partner's", body = super::error::ErrorBody),
        (status = 409, description = "`invalid_transition`: the partner order is not `confirmed` (not yet confirmed, cancelled, or already returned)", body = super::error::ErrorBody),
        (status = 422, description = "`validation_failed`: reason", body = super::error::ErrorBody)))]
pub async fn return_part(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<ReturnPartBody>,
) -> ApiResult<axum::Json<PartnerOrderView>> {
    let part = state
        .app
        .fulfilment
        .return_part(&user.actor(), id, &body.reason)
        .await?;
    Ok(axum::Json(part.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartnerOrderStatusQuery {
    /// Only partner orders in this status; all when absent.
    pub status: Option<PartnerOrderStatus>,
}

/// `?status=`; anything but a known status is 400 `invalid_query`.
pub struct StatusFilter(pub Option<PartnerOrderStatus>);

impl<S: Send + Sync> FromRequestParts<S> for StatusFilter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(q) =
            axum::extract::Query::<PartnerOrderStatusQuery>::from_request_parts(parts, state)
                .await
                .map_err(|r| ApiError::new(ErrorCode::InvalidQuery, r.body_text()))?;
        Ok(StatusFilter(q.status))
    }
}

#[utoipa::path(get, path = "/api/v1/partners/{id}/orders", tag = "fulfilment", security(("bearer" = [])),
    params(("id" = i64, Path), PartnerOrderStatusQuery, super::extract::PageQuery),
    responses((status = 200, description = "the partner's orders with their items, newest first", body = PageView<PartnerOrderView>),
        (status = 400, description = "`invalid_query`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not this partner's seller nor an admin", body = super::error::ErrorBody),
        (status = 404, description = "no such partner", body = super::error::ErrorBody)))]
pub async fn partner_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    StatusFilter(status): StatusFilter,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<PartnerOrderView>>> {
    let orders = state
        .app
        .fulfilment
        .partner_orders(&user.actor(), id, status, page)
        .await?;
    Ok(axum::Json(orders.into()))
}
