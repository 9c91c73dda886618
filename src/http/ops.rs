//! Operations: liveness, readiness and Prometheus metrics, outside `/api/v1` (no rate limits).

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the node is not stopping (a load balancer stops
/// sending it new work while it drains). Not ready is an error like any other
/// (`shutting_down` or `unavailable`), so every 4xx and 5xx has the one documented shape.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "`shutting_down`: the node is draining; `unavailable`: the database does not answer", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.app.orders.placement.is_draining() {
        return ApiError::new(ErrorCode::ShuttingDown, "this node is shutting down")
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(ErrorCode::Unavailable, "database unavailable").into_response()
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
