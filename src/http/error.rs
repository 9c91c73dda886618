//! The one HTTP error type. Every stable error code is listed in [`ErrorCode`]; the mapping
//! to a status is one `match` with no catch-all arm, so adding a code forces a decision.
//! Internal details are logged once here and never sent to the client.

use crate::app::error::{AppError, PlaceError};
use crate::domain::allocation::Rejection;
use crate::domain::DomainError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    ValidationFailed,
    /// Items of a batch break a rule: `items` lists each by its index; nothing was done.
    BatchInvalid,
    /// A batch with more items than one request may carry; nothing was done.
    BatchTooLarge,
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidPath,
    InvalidQuery,
    IdempotencyKeyRequired,
    IdempotencyMismatch,
    Unauthorized,
    InvalidToken,
    InvalidCredentials,
    /// A webhook whose signature is missing, stale or wrong.
    InvalidSignature,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    EmailTaken,
    OutOfStock,
    /// A stock adjustment would take `on_hand` below the units held for open orders.
    InsufficientStock,
    NotReleased,
    PurchaseLimit,
    PaymentAmountMismatch,
    PaymentDeclined,
    /// The gateway has not captured the payment (yet): nothing changed.
    PaymentNotCompleted,
    /// The gateway does not know the payment id.
    PaymentNotFound,
    /// The payment id is bound to another order.
    PaymentKeyReused,
    OrderNotPayable,
    OrderNotCancellable,
    /// The buyer cancels a paid order only while none of its partner orders has shipped.
    OrderAlreadyShipped,
    OrderNotConfirmable,
    /// A paid order is confirmed only once every partner order is delivered (or cancelled).
    OrderNotDelivered,
    /// A partner order asked for a step its status does not allow (`ship` before
    /// `prepare`, `deliver` twice…).
    InvalidTransition,
    /// The buyer already waits for (or holds an offer of) this product.
    AlreadyWaitlisted,
    /// A points deduction (or hold) larger than the buyer's unheld points.
    InsufficientPoints,
    /// The coupon campaign has issued all its coupons.
    CouponSoldOut,
    /// The buyer already holds a coupon of this campaign.
    CouponAlreadyIssued,
    /// The coupon campaign's issue window has not opened yet or has closed.
    CouponNotIssuable,
    /// An order names a user coupon that does not exist or is another buyer's.
    CouponNotFound,
    /// An order names a coupon past its expiry.
    CouponExpired,
    /// An order names a coupon held by another open order, or already used.
    CouponInUse,
    /// The order total is below the coupon campaign's minimum order amount.
    CouponMinOrderNotMet,
    /// An order spends more points than is left to pay after its coupon.
    PointsExceedPayable,
    /// A dead letter that was already replayed or discarded.
    DeadLetterNotOpen,
    /// A dead letter names a handler this node does not run.
    UnknownHandler,
    /// A dead letter's message is not an event this system wrote: it cannot be replayed.
    InvalidMessage,
    /// The handler failed again on a replayed dead letter; it stays open.
    ReplayFailed,
    /// A business day can be settled only once it has ended in the settlement time zone.
    BusinessDayNotOver,
    RequestTimeout,
    /// Too many requests from this user or address; see `Retry-After`.
    RateLimited,
    /// Too many failed logins for this account or from this address, or too many sign-ups
    /// from this address, in the window; see `Retry-After`.
    TooManyAttempts,
    /// The user already holds the most live streams (Server-Sent Events) allowed.
    TooManyStreams,
    Overloaded,
    Unavailable,
    /// This node is stopping (a deploy, a restart): retry after `Retry-After`, on another
    /// node or this one once it is back.
    ShuttingDown,
    /// The payment gateway is failing (its circuit breaker is open) or did not answer in
    /// time; pay again after `Retry-After` seconds, before the order's deadline.
    PaymentGatewayUnavailable,
    Internal,
}

impl ErrorCode {
    /// The `Retry-After` of a refusal that says "come back later" when nothing more exact
    /// is known; `None` for codes that send no such header.
    pub fn retry_after_secs(self) -> Option<u64> {
        use ErrorCode::*;
        matches!(
            self,
            Overloaded
                | RateLimited
                | TooManyAttempts
                | TooManyStreams
                | PaymentGatewayUnavailable
                | ShuttingDown
        )
        .then_some(1)
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            MalformedJson | InvalidPath | InvalidQuery | IdempotencyKeyRequired => {
                StatusCode::BAD_REQUEST
            }
            ValidationFailed | BatchInvalid | BatchTooLarge | IdempotencyMismatch
            | PurchaseLimit | CouponMinOrderNotMet | PointsExceedPayable => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized | InvalidToken | InvalidCredentials | InvalidSignature => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden => StatusCode::FORBIDDEN,
            NotFound | CouponNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EmailTaken
            | OutOfStock
            | InsufficientStock
            | NotReleased
            | OrderNotPayable
            | OrderNotCancellable
            | OrderAlreadyShipped
            | OrderNotConfirmable
            | OrderNotDelivered
            | InvalidTransition
            | AlreadyWaitlisted
            | InsufficientPoints
            | CouponSoldOut
            | CouponAlreadyIssued
            | CouponNotIssuable
            | CouponExpired
            | CouponInUse
            | DeadLetterNotOpen
            | UnknownHandler
            | InvalidMessage
            | ReplayFailed
            | BusinessDayNotOver
            | PaymentAmountMismatch
            | PaymentNotCompleted
            | PaymentNotFound
            | PaymentKeyReused => StatusCode::CONFLICT,
            PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            RateLimited | TooManyAttempts | TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Overloaded | Unavailable | PaymentGatewayUnavailable | ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Whole seconds for the `Retry-After` header; codes that always carry one
    /// ([`ErrorCode::retry_after_secs`]) default to 1.
    pub retry_after_secs: Option<u64>,
    /// Per-item reasons of a refused batch (`batch_invalid`); empty otherwise.
    pub items: Vec<ItemErrorView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Only with `batch_invalid`: every refused item of the batch, by index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemErrorView>,
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemErrorView {
    /// The item's position in the request's array, from 0.
    pub index: usize,
    /// The field at fault (`name`, `price`, `partner_id`…).
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_secs: None,
            items: Vec::new(),
        }
    }

    /// Tells the client to retry after `wait`, in whole seconds rounded up (at least 1): a
    /// client that waits this long has waited long enough.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "not allowed for this account")
    }

    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code,
            message: self.message.clone(),
            items: self.items.clone(),
        }
    }

    /// Logs the cause once and answers with a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                items: self.items,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs.or(self.code.retry_after_secs()) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::new(ErrorCode::ValidationFailed, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict("email_taken") => {
                ApiError::new(ErrorCode::EmailTaken, "email is already registered")
            }
            // A race with another node that persisted past its retries: safe to retry.
            StoreError::Conflict(what) => {
                tracing::warn!(conflict = what, "concurrent update");
                ApiError::new(ErrorCode::Unavailable, "concurrent update, retry shortly")
            }
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "temporarily unavailable, retry shortly",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::Overloaded => ApiError::new(
                ErrorCode::Overloaded,
                "too many orders in flight, retry shortly",
            ),
            PlaceError::LockTimeout => ApiError::new(
                ErrorCode::Overloaded,
                "timed out waiting for the product lock, retry shortly",
            ),
            PlaceError::ShuttingDown => ApiError::new(
                ErrorCode::ShuttingDown,
                "this node is shutting down, retry shortly",
            ),
            PlaceError::Store(e) => e.into(),
        }
    }
}

impl From<&Rejection> for ApiError {
    fn from(r: &Rejection) -> Self {
        match r {
            Rejection::UnknownProduct { product_id } => {
                ApiError::not_found(&format!("product {product_id}"))
            }
            Rejection::NotReleased { product_id } => ApiError::new(
                ErrorCode::NotReleased,
                format!("product {product_id} is not released yet"),
            ),
            Rejection::OutOfStock { product_id } => ApiError::new(
                ErrorCode::OutOfStock,
                format!("product {product_id} is out of stock"),
            ),
            Rejection::PurchaseLimit {
                product_id,
                max_per_user,
            } => ApiError::new(
                ErrorCode::PurchaseLimit,
                format!("at most {max_per_user} units of product {product_id} per buyer"),
            ),
            Rejection::IdempotencyMismatch => ApiError::new(
                ErrorCode::IdempotencyMismatch,
                "this Idempotency-Key was used with a different request body",
            ),
            Rejection::TotalTooLarge => {
                ApiError::new(ErrorCode::ValidationFailed, "order total is too large")
            }
            Rejection::CouponNotFound => {
                ApiError::new(ErrorCode::CouponNotFound, "coupon not found")
            }
            Rejection::CouponExpired => {
                ApiError::new(ErrorCode::CouponExpired, "the coupon has expired")
            }
            Rejection::CouponInUse => ApiError::new(
                ErrorCode::CouponInUse,
                "the coupon is held by another order or already used",
            ),
            Rejection::CouponMinOrderNotMet { min_order_amount } => ApiError::new(
                ErrorCode::CouponMinOrderNotMet,
                format!(
                    "the coupon needs an order of at least {} won",
                    min_order_amount.get()
                ),
            ),
            Rejection::InsufficientPoints { available } => ApiError::new(
                ErrorCode::InsufficientPoints,
                format!("only {available} points are available"),
            ),
            Rejection::PointsExceedPayable { payable } => ApiError::new(
                ErrorCode::PointsExceedPayable,
                format!("at most {} points can be used on this order", payable.get()),
            ),
        }
    }
}

/// Every refusal of a use case, with its stable code. The message is the use case's own
/// wording except where internals must not leak (stores, gateways, internal failures).
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Invalid(e) => e.into(),
            AppError::NotFound(_) => ApiError::new(ErrorCode::NotFound, message),
            AppError::Forbidden => ApiError::forbidden(),
            AppError::InvalidCredentials => ApiError::new(ErrorCode::InvalidCredentials, message),
            AppError::InvalidRefreshToken => ApiError::new(ErrorCode::InvalidToken, message),
            AppError::TooManyAttempts { retry_after } => {
                ApiError::new(ErrorCode::TooManyAttempts, message).retry_after(retry_after)
            }
            AppError::PasswordChecksBusy => ApiError::new(ErrorCode::Overloaded, message),
            AppError::Rejected(rejection) => (&rejection).into(),
            AppError::Place(e) => e.into(),
            AppError::OrderNotPayable => ApiError::new(ErrorCode::OrderNotPayable, message),
            AppError::OrderNotCancellable => ApiError::new(ErrorCode::OrderNotCancellable, message),
            AppError::OrderNotConfirmable => ApiError::new(ErrorCode::OrderNotConfirmable, message),
            AppError::OrderNotDelivered => ApiError::new(ErrorCode::OrderNotDelivered, message),
            AppError::OrderAlreadyShipped => ApiError::new(ErrorCode::OrderAlreadyShipped, message),
            AppError::InvalidTransition(_) => ApiError::new(ErrorCode::InvalidTransition, message),
            AppError::PaymentAmountMismatch => {
                ApiError::new(ErrorCode::PaymentAmountMismatch, message)
            }
            AppError::PaymentDeclined => ApiError::new(ErrorCode::PaymentDeclined, message),
            AppError::PaymentNotCompleted => ApiError::new(ErrorCode::PaymentNotCompleted, message),
            AppError::PaymentNotFound => ApiError::new(ErrorCode::PaymentNotFound, message),
            AppError::PaymentKeyReused => ApiError::new(ErrorCode::PaymentKeyReused, message),
            AppError::InvalidSignature => ApiError::new(ErrorCode::InvalidSignature, message),
            AppError::Gateway(_) => ApiError::new(
                ErrorCode::Unavailable,
                "payment gateway unavailable, retry shortly",
            ),
            AppError::PaymentGatewayUnavailable { retry_after_secs } => {
                ApiError::new(ErrorCode::PaymentGatewayUnavailable, message)
                    .retry_after(Duration::from_secs(retry_after_secs))
            }
            AppError::InsufficientStock => ApiError::new(ErrorCode::InsufficientStock, message),
            AppError::AlreadyWaitlisted => ApiError::new(ErrorCode::AlreadyWaitlisted, message),
            AppError::CouponNotIssuable => ApiError::new(ErrorCode::CouponNotIssuable, message),
            AppError::CouponSoldOut => ApiError::new(ErrorCode::CouponSoldOut, message),
            AppError::CouponAlreadyIssued => ApiError::new(ErrorCode::CouponAlreadyIssued, message),
            AppError::IdempotencyMismatch => ApiError::new(ErrorCode::IdempotencyMismatch, message),
            AppError::InsufficientPoints => ApiError::new(ErrorCode::InsufficientPoints, message),
            AppError::DeadLetterNotOpen => ApiError::new(ErrorCode::DeadLetterNotOpen, message),
            AppError::UnknownHandler(_) => ApiError::new(ErrorCode::UnknownHandler, message),
            AppError::InvalidMessage(_) => ApiError::new(ErrorCode::InvalidMessage, message),
            AppError::ReplayFailed(_) => ApiError::new(ErrorCode::ReplayFailed, message),
            AppError::BusinessDayNotOver(_) => {
                ApiError::new(ErrorCode::BusinessDayNotOver, message)
            }
            AppError::InvalidItems(items) => {
                let mut error = ApiError::new(ErrorCode::BatchInvalid, message);
                error.items = items
                    .into_iter()
                    .map(|item| ItemErrorView {
                        index: item.index,
                        field: item.error.field.to_owned(),
                        message: item.error.to_string(),
                    })
                    .collect();
                error
            }
            AppError::BatchTooLarge { .. } => ApiError::new(ErrorCode::BatchTooLarge, message),
            AppError::Store(e) => e.into(),
            AppError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::breaker::BreakerError;

    async fn answer(e: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&body).expect("JSON");
        (status, retry_after, body)
    }

    #[tokio::test]
    async fn an_open_breaker_answers_503_with_the_seconds_left() {
        let open: BreakerError<AppError> = BreakerError::Open {
            retry_after: Duration::from_millis(29_001),
        };
        let (status, retry_after, body) = answer(AppError::from(open).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("30"), "rounded up");
        assert_eq!(
            body["error"]["code"], "payment_gateway_unavailable",
            "{body}"
        );

        let timeout: BreakerError<AppError> = BreakerError::Timeout;
        let (status, retry_after, _) = answer(AppError::from(timeout).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));

        let zero = AppError::PaymentGatewayUnavailable {
            retry_after_secs: 0,
        };
        let (_, retry_after, _) = answer(zero.into()).await;
        assert_eq!(retry_after.as_deref(), Some("1"), "at least one second");
    }

    #[tokio::test]
    async fn the_call_s_own_error_maps_as_without_the_breaker() {
        let inner: BreakerError<AppError> = BreakerError::Inner(AppError::PaymentDeclined);
        let (status, retry_after, body) = answer(AppError::from(inner).into()).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(retry_after, None);
        assert_eq!(body["error"]["code"], "payment_declined");
    }

    #[tokio::test]
    async fn retry_after_is_whole_seconds_rounded_up() {
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down");
        assert_eq!(answer(limited).await.1.as_deref(), Some("1"));
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down")
            .retry_after(Duration::from_millis(2_001));
        assert_eq!(answer(limited).await.1.as_deref(), Some("3"));
        let overloaded = ApiError::new(ErrorCode::Overloaded, "full");
        assert_eq!(answer(overloaded).await.1.as_deref(), Some("1"));
        assert_eq!(answer(ApiError::not_found("order")).await.1, None);
    }
}
