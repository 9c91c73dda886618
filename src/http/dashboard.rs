//! `GET /api/v1/admin/dashboard`: the operations page's data, for admins (`app::operations`).
//! The page (`/admin`) polls it every second and derives rates from successive snapshots.

use super::error::ApiResult;
use super::extract::AuthUser;
use super::state::AppState;
use crate::app::operations::Dashboard;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

#[utoipa::path(get, path = "/api/v1/admin/dashboard", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "the cluster as the operations page shows it; counters cumulative, summed over the nodes alive", body = Dashboard),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not an admin", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`: the database does not answer", body = super::error::ErrorBody)))]
pub async fn dashboard(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    let snapshot = state.app.operations.dashboard(&user.actor()).await?;
    // Live data: never from a cache.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(&*snapshot),
    )
        .into_response())
}
