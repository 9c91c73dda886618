//! Dead letters for admins: list, read, replay, discard. The use case is
//! `app::dead_letters`; the retry job is `jobs::dead_letters`.

use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, Page, Path};
use super::page::PageView;
use super::state::AppState;
use crate::app::dead_letters::{event_type, message_json};
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::Timestamp;
use crate::store::DeadLetterRecord;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    /// The handler that gave up on the message (`points-earn`); a replay runs it again.
    pub handler: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The outbox id, when the message was a readable event.
    pub event_id: Option<i64>,
    /// The message's `type`, when it has one.
    pub event_type: Option<String>,
    /// The latest failure.
    pub error: String,
    /// Every try: the consumer's, then one per retry or replay that failed.
    pub attempts: i32,
    /// Automatic retries by the dead-letter job (it stops at `dlq_retry_max`).
    pub retries: i32,
    pub status: DeadLetterStatus,
    #[schema(value_type = String, format = DateTime)]
    pub first_failed_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_failed_at: Timestamp,
    /// The message as received: its JSON, or a string when it is not JSON.
    #[schema(value_type = Object)]
    pub message: serde_json::Value,
}

impl From<DeadLetterRecord> for DeadLetterView {
    fn from(r: DeadLetterRecord) -> Self {
        let message = message_json(&r.message);
        DeadLetterView {
            id: r.id,
            handler: r.handler,
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            key: r.key,
            event_id: r.event_id,
            event_type: event_type(&message),
            error: r.error,
            attempts: r.attempts,
            retries: r.retries,
            status: r.status,
            first_failed_at: r.first_failed_at,
            last_failed_at: r.last_failed_at,
            message,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only letters in this status (`open`, `replayed`, `discarded`); all when absent.
    pub status: Option<DeadLetterStatus>,
}

/// `?status=`; anything but a known status is 400 `invalid_query`.
pub struct StatusFilter(pub Option<DeadLetterStatus>);

impl<S: Send + Sync> FromRequestParts<S> for StatusFilter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(q) =
            axum::extract::Query::<StatusQuery>::from_request_parts(parts, state)
                .await
                .map_err(|r| ApiError::new(ErrorCode::InvalidQuery, r.body_text()))?;
        Ok(StatusFilter(q.status))
    }
}

#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "dead letters", security(("bearer" = [])),
    params(StatusQuery, super::extract::PageQuery),
    responses((status = 200, description = "dead letters, newest first", body = PageView<DeadLetterView>),
        (status = 400, description = "`invalid_query`", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    user: AuthUser,
    StatusFilter(status): StatusFilter,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<DeadLetterView>>> {
    let letters = state
        .app
        .dead_letters
        .list(&user.actor(), status, page)
        .await?;
    Ok(axum::Json(letters.into()))
}

#[utoipa::path(get, path = "/api/v1/admin/dead-letters/{id}", tag = "dead letters", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = DeadLetterView), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_dead_letter(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = state.app.dead_letters.get(&user.actor(), id).await?;
    Ok(axum::Json(letter.into()))
}

/// Runs the message through its handler again. Handlers are idempotent by `(handler,
/// event id)`: a message processed meanwhile changes nothing the second time.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/{id}/replay", tag = "dead letters", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "processed: the letter, now `replayed`", body = DeadLetterView),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`dead_letter_not_open`; or, the letter staying open with one more attempt: \
            `replay_failed` (the handler failed again), `invalid_message` (not an event this system wrote), \
            `unknown_handler` (no such handler on this node)", body = super::error::ErrorBody)))]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = state.app.dead_letters.replay(&user.actor(), id).await?;
    Ok(axum::Json(letter.into()))
}

#[utoipa::path(delete, path = "/api/v1/admin/dead-letters/{id}", tag = "dead letters", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "the letter, now `discarded`", body = DeadLetterView),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`dead_letter_not_open`", body = super::error::ErrorBody)))]
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = state.app.dead_letters.discard(&user.actor(), id).await?;
    Ok(axum::Json(letter.into()))
}
