//! Rate limits per signed-in user and per client address (`cluster::rate_limit`), applied
//! to every `/api/v1` route before its handler runs.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Absent when the router is served without connect info (never in `Server::run`).
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Only a valid token names a user: a forged `sub` must not drain someone else's budget.
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|token| state.auth.verify_access(token.trim()).ok())
        .map(|claims| claims.sub);
    match state.cluster.limiter.check(user, ip).await {
        Ok(()) => next.run(req).await,
        Err((scope, retry_after)) => {
            let message = format!("too many requests from this {}", scope.as_str());
            // A client that waits this long is let through.
            ApiError::new(ErrorCode::RateLimited, message)
                .retry_after(retry_after)
                .into_response()
        }
    }
}
