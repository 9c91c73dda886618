//! `GET /api/v1/admin/jobs`: the scheduled jobs and their last runs, for admins. The use
//! case is `app::jobs`.

use super::error::ApiResult;
use super::extract::AuthUser;
use super::state::AppState;
use crate::app::jobs::JobStatus;
use crate::domain::Timestamp;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// One scheduled job. The last run's fields are `null` until a lease-held job has run
/// (jobs on every node are not recorded).
#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub name: String,
    /// `every 300 s`, or `daily at 04:00 Asia/Seoul (checked every 60 s)`.
    pub schedule: String,
    /// `one_node` (under its lease) or `every_node`.
    pub runs_on: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_started_at: Option<Timestamp>,
    pub last_duration_ms: Option<i64>,
    /// `ok` or `failed`.
    pub last_outcome: Option<String>,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// The node that held the lease for the last run.
    pub holder: Option<String>,
}

impl From<JobStatus> for JobView {
    fn from(s: JobStatus) -> Self {
        let run = s.last_run;
        JobView {
            name: s.job.name.to_owned(),
            schedule: s.job.schedule,
            runs_on: if s.job.one_node {
                "one_node"
            } else {
                "every_node"
            }
            .to_owned(),
            last_started_at: run.as_ref().map(|r| r.started_at),
            last_duration_ms: run.as_ref().map(|r| r.duration_ms),
            last_outcome: run
                .as_ref()
                .map(|r| if r.error.is_none() { "ok" } else { "failed" }.to_owned()),
            last_error: run.as_ref().and_then(|r| r.error.clone()),
            holder: run.map(|r| r.holder),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, description = "each job this node schedules, with the last run recorded", body = [JobView]),
        (status = 401, body = super::error::ErrorBody), (status = 403, description = "not an admin", body = super::error::ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<JobView>>> {
    let jobs = state.app.jobs.list(&user.actor()).await?;
    Ok(axum::Json(jobs.into_iter().map(JobView::from).collect()))
}
