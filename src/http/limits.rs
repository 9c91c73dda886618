//! Rate limits per signed-in user and per client address (`cluster::rate_limit`), applied
//! to every `/api/v1` route before its handler runs.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
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
            let mut response = ApiError::new(ErrorCode::RateLimited, message).into_response();
            // Whole seconds, rounded up: a client that waits this long is let through.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            response
        }
    }
}
