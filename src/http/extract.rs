//! Extractors that turn every malformed input into an [`ApiError`] with a stable code,
//! instead of axum's plain-text rejections.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::auth::{Claims, TokenError};
use crate::domain::{Actor, IdempotencyKey};
use crate::store::{PageRequest, MAX_PAGE_SIZE};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A JSON body. Syntax errors → 400 `malformed_json`; wrong types or missing fields → 422
/// `validation_failed`; no JSON content type → 415; over the body limit → 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = match (&rejection, rejection.status()) {
        (_, StatusCode::PAYLOAD_TOO_LARGE) => ErrorCode::PayloadTooLarge,
        (JsonRejection::MissingJsonContentType(_), _) => ErrorCode::UnsupportedMediaType,
        (JsonRejection::JsonDataError(_), _) => ErrorCode::ValidationFailed,
        _ => ErrorCode::MalformedJson,
    };
    ApiError::new(code, rejection.body_text())
}

/// A body its route reads itself (a signed webhook). Over the body limit → 413
/// `payload_too_large`, as for a JSON body, rather than axum's plain-text answer.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(bytes_rejection)
    }
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    let code = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::MalformedJson,
    };
    ApiError::new(code, rejection.body_text())
}

/// A path parameter; anything unparsable is 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::new(ErrorCode::InvalidPath, r.body_text()))
    }
}

pub const MAX_PAGE: i64 = 1_000_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number, 1..=1,000,000 (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<i64>,
}

/// `?page=&size=`, bounded.
pub struct Page(pub PageRequest);

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(q) =
            axum::extract::Query::<PageQuery>::from_request_parts(parts, state)
                .await
                .map_err(|r| ApiError::new(ErrorCode::InvalidQuery, r.body_text()))?;
        let page = q.page.unwrap_or(1);
        let size = q.size.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&page) || !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("page must be 1..={MAX_PAGE} and size 1..={MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Page(PageRequest { page, size }))
    }
}

/// The bearer of a valid, unrevoked access token.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl AuthUser {
    pub fn id(&self) -> i64 {
        self.0.sub
    }

    /// Who the use cases act for.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.0.sub,
            role: self.0.role,
            partner_id: self.0.pid,
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidToken, "malformed Authorization header")
            })?;
        match state.auth.verify_access(token.trim()) {
            Ok(claims) => Ok(AuthUser(claims)),
            Err(TokenError::Invalid) => Err(ApiError::new(
                ErrorCode::InvalidToken,
                "invalid or expired token",
            )),
            Err(TokenError::Revoked) => Err(ApiError::new(
                ErrorCode::InvalidToken,
                "token has been revoked",
            )),
        }
    }
}

/// The `Idempotency-Key` header, required on order placement.
pub struct IdempotencyHeader(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let raw = parts.headers.get("idempotency-key").ok_or_else(|| {
            ApiError::new(
                ErrorCode::IdempotencyKeyRequired,
                "the Idempotency-Key header is required",
            )
        })?;
        let raw = raw.to_str().map_err(|_| {
            ApiError::new(ErrorCode::ValidationFailed, "Idempotency-Key must be ASCII")
        })?;
        Ok(IdempotencyHeader(IdempotencyKey::parse(raw)?))
    }
}
