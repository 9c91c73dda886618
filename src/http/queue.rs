//! Waiting-room tickets: `202` answers to `POST /orders` when the writers are busy, and the
//! routes that follow a ticket to its outcome.

use super::error::{ApiError, ApiResult};
use super::extract::{AuthUser, Path};
use super::order_view::OrderView;
use super::state::AppState;
use crate::app::placement::waiting_room::{Ticket, TicketStatus};
use crate::store::PlaceOutcome;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// Position updates on a ticket's stream are sent at most this often.
const POSITION_EVERY: Duration = Duration::from_millis(250);

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
    pub error: Option<super::error::ErrorDetail>,
}

fn view(state: &AppState, ticket: &Ticket) -> TicketView {
    let base = format!("/api/v1/queue/{}", ticket.id);
    let room = state.app.orders.placement.waiting_room();
    let status = ticket.status.borrow().clone();
    let (name, order, error) = match status {
        TicketStatus::Waiting => ("waiting", None, None),
        TicketStatus::Placing => ("placing", None, None),
        TicketStatus::Done(Ok(PlaceOutcome::Placed(order))) => ("placed", Some(order.into()), None),
        TicketStatus::Done(Ok(PlaceOutcome::Replayed(order))) => {
            ("replayed", Some(order.into()), None)
        }
        TicketStatus::Done(Ok(PlaceOutcome::Rejected(rejection))) => {
            ("rejected", None, Some(ApiError::from(&rejection).detail()))
        }
        TicketStatus::Done(Err(_)) => (
            "failed",
            None,
            Some(
                ApiError::new(
                    super::error::ErrorCode::Unavailable,
                    "placement failed, retry with the same Idempotency-Key",
                )
                .detail(),
            ),
        ),
    };
    TicketView {
        ticket: ticket.id.clone(),
        status: name,
        position: room.position(ticket),
        events_url: format!("{base}/events"),
        status_url: base,
        order,
        error,
    }
}

/// `202 Accepted` with the ticket, and `Location` pointing at its status.
pub fn queued_response(state: &AppState, ticket: &Ticket) -> Response {
    let body = view(state, ticket);
    let location = HeaderValue::from_str(&body.status_url).ok();
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The caller's own ticket; anyone else's is "not found".
fn own_ticket(state: &AppState, user: &AuthUser, id: &str) -> ApiResult<Arc<Ticket>> {
    match state.app.orders.placement.waiting_room().ticket(id) {
        Some(ticket) if ticket.owner == user.id() => Ok(ticket),
        _ => Err(ApiError::not_found("ticket")),
    }
}

#[utoipa::path(get, path = "/api/v1/queue/{ticket}", tag = "orders", security(("bearer" = [])),
    params(("ticket" = String, Path)), responses((status = 200, body = TicketView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_ticket(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TicketView>> {
    let ticket = own_ticket(&state, &user, &id)?;
    Ok(axum::Json(view(&state, &ticket)))
}

#[utoipa::path(get, path = "/api/v1/queue/{ticket}/events", tag = "orders", security(("bearer" = [])), params(("ticket" = String, Path)),
    responses((status = 200, description = "text/event-stream: `position` events while waiting, then one `outcome` event (TicketView), then the stream ends"),
        (status = 404, body = super::error::ErrorBody), (status = 429, description = "`too_many_streams`", body = super::error::ErrorBody)))]
pub async fn ticket_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let ticket = own_ticket(&state, &user, &id)?;
    let slot = state.streams.open(user.id())?;
    let follow = Follow {
        status: ticket.status.subscribe(),
        head: state.app.orders.placement.waiting_room().head(),
        stop: state.shutdown.clone(),
        phase: Phase::Start,
        state,
        ticket,
    };
    let stream = stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(slot.bound(stream)).keep_alive(KeepAlive::default()))
}

#[derive(PartialEq)]
enum Phase {
    Start,
    Waiting,
    Finished,
}

/// Follows one ticket: its position first, then position changes (throttled), then one
/// `outcome` event, after which the stream ends.
struct Follow {
    state: AppState,
    ticket: Arc<Ticket>,
    status: tokio::sync::watch::Receiver<TicketStatus>,
    head: tokio::sync::watch::Receiver<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
    phase: Phase,
}

impl Follow {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.phase == Phase::Finished {
                return None;
            }
            if matches!(*self.status.borrow_and_update(), TicketStatus::Done(_)) {
                self.phase = Phase::Finished;
                return Some(self.event("outcome", &view(&self.state, &self.ticket)));
            }
            if self.phase == Phase::Start || self.head.has_changed().unwrap_or(false) {
                if self.phase == Phase::Waiting {
                    tokio::time::sleep(POSITION_EVERY).await;
                }
                self.phase = Phase::Waiting;
                self.head.borrow_and_update();
                let position = self
                    .state
                    .app
                    .orders
                    .placement
                    .waiting_room()
                    .position(&self.ticket);
                return Some(self.event("position", &serde_json::json!({ "position": position })));
            }
            tokio::select! {
                changed = self.status.changed() => changed.ok()?,
                changed = self.head.changed() => changed.ok()?,
                _ = self.stop.changed() => return None,
            }
        }
    }

    fn event<T: Serialize>(&self, name: &str, data: &T) -> Event {
        Event::default()
            .event(name)
            .json_data(data)
            .unwrap_or_default()
    }
}
