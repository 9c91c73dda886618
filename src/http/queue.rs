//! Waiting-room tickets: `202` answers to `POST /orders` when the writers are busy, and the
//! routes that follow a ticket to its outcome. Tickets live in the store, so any node
//! answers for any ticket, before and after a restart.

use super::error::{ApiError, ApiResult, ErrorCode, ErrorDetail};
use super::extract::{AuthUser, Path};
use super::order_view::OrderView;
use super::state::AppState;
use crate::app::orders::TicketInfo;
use crate::domain::Actor;
use crate::store::{TicketOutcome, TicketRecord, TicketState};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;

/// How often a ticket's stream reads the ticket.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

#[derive(Serialize, ToSchema)]
pub struct TicketView {
    pub ticket: String,
    /// `waiting`, `placing`, `placed`, `replayed`, `rejected` or `failed`.
    pub status: &'static str,
    /// 1 = next to be admitted; 0 once admitted.
    pub position: u64,
    pub status_url: String,
    pub events_url: String,
    /// The order, once placed (or replayed).
    pub order: Option<OrderView>,
    /// Why not, once rejected or failed.
    pub error: Option<ErrorDetail>,
}

impl TicketView {
    fn is_final(&self) -> bool {
        !matches!(self.status, "waiting" | "placing")
    }
}

fn view(info: TicketInfo) -> TicketView {
    let TicketInfo {
        ticket,
        position,
        order,
    } = info;
    let (status, error) = match (&ticket.state, &ticket.outcome) {
        (TicketState::Waiting, _) => ("waiting", None),
        (TicketState::Admitted, _) | (TicketState::Done, None) => ("placing", None),
        (TicketState::Done, Some(TicketOutcome::Placed { .. })) => ("placed", None),
        (TicketState::Done, Some(TicketOutcome::Replayed { .. })) => ("replayed", None),
        (TicketState::Done, Some(TicketOutcome::Rejected(rejection))) => {
            ("rejected", Some(ApiError::from(rejection).detail()))
        }
        (TicketState::Done, Some(TicketOutcome::Failed)) => (
            "failed",
            Some(
                ApiError::new(
                    ErrorCode::Unavailable,
                    "placement failed, retry with the same Idempotency-Key",
                )
                .detail(),
            ),
        ),
    };
    let base = format!("/api/v1/queue/{}", ticket.id);
    TicketView {
        ticket: ticket.id,
        status,
        position,
        events_url: format!("{base}/events"),
        status_url: base,
        order: order.map(OrderView::from),
        error,
    }
}

/// `202 Accepted` with the ticket, and `Location` pointing at its status.
pub fn queued_response(state: &AppState, ticket: TicketRecord) -> Response {
    let position = state.app.orders.placement.waiting_room().position(&ticket);
    let body = view(TicketInfo {
        ticket,
        position,
        order: None,
    });
    let location = HeaderValue::from_str(&body.status_url).ok();
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[utoipa::path(get, path = "/api/v1/queue/{ticket}", tag = "orders", security(("bearer" = [])),
    params(("ticket" = String, Path)), responses((status = 200, body = TicketView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_ticket(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TicketView>> {
    let info = state.app.orders.ticket(&user.actor(), &id).await?;
    Ok(axum::Json(view(info)))
}

#[utoipa::path(get, path = "/api/v1/queue/{ticket}/events", tag = "orders", security(("bearer" = [])), params(("ticket" = String, Path)),
    responses((status = 200, description = "text/event-stream: `position` events while waiting, then one `outcome` event (TicketView), then the stream ends"),
        (status = 404, body = super::error::ErrorBody), (status = 429, description = "`too_many_streams`", body = super::error::ErrorBody)))]
pub async fn ticket_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let actor = user.actor();
    // Unknown or someone else's: 404 now, not an empty stream.
    let first = view(state.app.orders.ticket(&actor, &id).await?);
    let slot = state.streams.open(user.id())?;
    let follow = Follow {
        stop: state.shutdown.clone(),
        state,
        actor,
        id,
        next: Some(first),
        last_position: None,
    };
    let stream = stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(slot.bound(stream)).keep_alive(KeepAlive::default()))
}

/// Follows one ticket: its position, then each change of it, then one `outcome` event,
/// after which the stream ends. It reads the ticket every [`FOLLOW_EVERY`]: the ticket may
/// be admitted by any node.
struct Follow {
    state: AppState,
    actor: Actor,
    id: String,
    stop: tokio::sync::watch::Receiver<bool>,
    /// The view to report next (read, not yet sent); `None` once the outcome was sent.
    next: Option<TicketView>,
    last_position: Option<u64>,
}

impl Follow {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let seen = self.next.take()?;
            if seen.is_final() {
                return Some(event("outcome", &seen));
            }
            if self.last_position != Some(seen.position) {
                self.last_position = Some(seen.position);
                let position = serde_json::json!({ "position": seen.position });
                self.next = Some(seen);
                return Some(event("position", &position));
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = self.stop.wait_for(|stopped| *stopped) => return None,
            }
            match self.state.app.orders.ticket(&self.actor, &self.id).await {
                Ok(info) => self.next = Some(view(info)),
                Err(e) => {
                    // A store hiccup: try again at the next read.
                    tracing::debug!(error = %e, "reading a followed ticket failed");
                    self.next = Some(seen);
                }
            }
        }
    }
}

fn event<T: Serialize>(name: &str, data: &T) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_default()
}
