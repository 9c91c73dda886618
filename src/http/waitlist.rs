//! Waitlists of sold-out products (joining, leaving, the buyer's entries) and the buyer's
//! own live stream, `GET /me/events`. The use cases are `app::waitlist`.

use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, Page, Path};
use super::page::PageView;
use super::state::AppState;
use crate::domain::waitlist::WaitlistStatus;
use crate::domain::{Role, Timestamp};
use crate::events::UserEvent;
use crate::store::WaitlistEntryRecord;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistBody {
    /// Units wanted: 1 (the default) up to the product's `max_per_user`, or up to 100 when
    /// it has no limit.
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitlistEntryView {
    pub id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub status: WaitlistStatus,
    /// 1-based place in line while `waiting`; null otherwise.
    pub position: Option<i64>,
    /// The offer: a `pending_payment` order with its own `pay_by`, once offered (kept when
    /// the offer lapses or is fulfilled).
    pub order_id: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<WaitlistEntryRecord> for WaitlistEntryView {
    fn from(e: WaitlistEntryRecord) -> Self {
        WaitlistEntryView {
            id: e.id,
            product_id: e.product_id,
            quantity: e.quantity,
            status: e.status,
            position: e.position,
            order_id: e.order_id,
            joined_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// The body may be empty (all defaults) or a JSON object; errors carry the same codes as
/// the `Json` extractor's.
fn optional_body(raw: &Bytes) -> ApiResult<JoinWaitlistBody> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(JoinWaitlistBody::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::ValidationFailed
        } else {
            ErrorCode::MalformedJson
        };
        ApiError::new(code, format!("invalid body: {e}"))
    })
}

#[utoipa::path(post, path = "/api/v1/products/{id}/waitlist", tag = "waitlist", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Option<JoinWaitlistBody>, description = "optional; `{}` or no body waits for 1 unit"),
    responses((status = 201, body = WaitlistEntryView), (status = 400, description = "`malformed_json`", body = super::error::ErrorBody),
        (status = 403, description = "not a buyer", body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`already_waitlisted`: the buyer already waits for, or holds an offer of, this product", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn join_waitlist(
    State(state): State<AppState>,
    user: AuthUser,
    Path(product_id): Path<i64>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<WaitlistEntryView>)> {
    let actor = user.actor();
    // Checked before the body is read, as every other route refuses a wrong role before
    // looking at its input (the use case checks it again).
    if actor.role != Role::Buyer {
        return Err(ApiError::forbidden());
    }
    let body = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::MalformedJson
        };
        ApiError::new(code, r.body_text())
    })?;
    let body = optional_body(&body)?;
    let waitlists = &state.app.waitlists;
    let entry = waitlists.join(&actor, product_id, body.quantity).await?;
    Ok((StatusCode::CREATED, axum::Json(entry.into())))
}

#[utoipa::path(delete, path = "/api/v1/products/{id}/waitlist", tag = "waitlist", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "left the line"), (status = 403, description = "not a buyer", body = super::error::ErrorBody),
        (status = 404, description = "not waiting for this product (an offer is left by cancelling its order)", body = super::error::ErrorBody)))]
pub async fn leave_waitlist(
    State(state): State<AppState>,
    user: AuthUser,
    Path(product_id): Path<i64>,
) -> ApiResult<StatusCode> {
    state.app.waitlists.leave(&user.actor(), product_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me/waitlist", tag = "waitlist", security(("bearer" = [])), params(super::extract::PageQuery),
    responses((status = 200, description = "the caller's waitlist entries, newest first", body = PageView<WaitlistEntryView>)))]
pub async fn my_waitlist(
    State(state): State<AppState>,
    user: AuthUser,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<WaitlistEntryView>>> {
    let entries = state.app.waitlists.entries(&user.actor(), page).await?;
    Ok(axum::Json(entries.into()))
}

fn user_sse(event: &UserEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.event_type.as_str())
        .json_data(event)
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/me/events", tag = "waitlist", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream: first `ready` `{type: \"ready\", user_id}`, then one event per \
        `order.*` of the caller's orders and `waitlist.*` of their entries (offered, lapsed, …), each \
        `{id, type, payload}` with the outbox payload; the server ends it after `stream_max_age_secs` (reconnect)"),
        (status = 429, description = "`too_many_streams`: the user already holds `streams_per_user_max` live streams on this node", body = super::error::ErrorBody)))]
pub async fn my_events(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let slot = state.streams.open(user.id())?;
    // Subscribed before answering: once a client sees `ready`, no later event is missed.
    let updates = state.hub.subscribe_user(user.id());
    let ready = Event::default()
        .event("ready")
        .json_data(serde_json::json!({ "type": "ready", "user_id": user.id() }))
        .unwrap_or_default();
    let stop = state.shutdown.clone();
    let rest = stream::unfold((updates, stop), |(mut updates, mut stop)| async move {
        loop {
            tokio::select! {
                received = updates.recv() => match received {
                    Ok(event) => return Some((Ok(user_sse(&event)), (updates, stop))),
                    // A slow client skips ahead rather than holding the dispatcher back.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                _ = stop.changed() => return None,
            }
        }
    });
    let events = stream::once(async move { Ok(ready) }).chain(rest);
    Ok(Sse::new(slot.bound(events)).keep_alive(KeepAlive::default()))
}
