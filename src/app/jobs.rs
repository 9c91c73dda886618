//! The scheduled jobs as an admin sees them (`GET /api/v1/admin/jobs`): each job this node
//! schedules, its schedule, and the last run the cluster recorded of it — when it started,
//! how long it took, how it ended and which node held its lease. The scheduler
//! (`jobs::scheduler`) records the runs and registers its jobs here once built.

use super::error::{require, AppResult};
use crate::domain::{Actor, Role};
use crate::store::{JobRunRecord, Store};
use std::sync::{Arc, OnceLock};

/// A job as its scheduler runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    pub name: &'static str,
    /// As an operator reads it: `every 300 s`, `daily at 04:00 Asia/Seoul …`.
    pub schedule: String,
    /// Runs on the one node holding its lease (and its runs are recorded).
    pub one_node: bool,
}

/// A scheduled job and its last recorded run, if any.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub job: ScheduledJob,
    pub last_run: Option<JobRunRecord>,
}

pub struct Jobs {
    pub store: Arc<dyn Store>,
    /// Set once by the wiring when the scheduler is built; empty on a command-line node,
    /// which schedules nothing.
    pub scheduled: OnceLock<Vec<ScheduledJob>>,
}

impl Jobs {
    pub fn new(store: Arc<dyn Store>) -> Jobs {
        Jobs {
            store,
            scheduled: OnceLock::new(),
        }
    }

    /// The scheduler's jobs; the first registration stands.
    pub fn register(&self, jobs: Vec<ScheduledJob>) {
        if self.scheduled.set(jobs).is_err() {
            tracing::warn!("scheduled jobs registered twice; keeping the first");
        }
    }

    /// Every scheduled job with its last run: admins only.
    pub async fn list(&self, actor: &Actor) -> AppResult<Vec<JobStatus>> {
        require(actor, &[Role::Admin])?;
        let mut runs = self.store.job_runs().await?;
        let scheduled = self.scheduled.get().cloned().unwrap_or_default();
        Ok(scheduled
            .into_iter()
            .map(|job| {
                let last_run = runs
                    .iter()
                    .position(|r| r.name == job.name)
                    .map(|i| runs.swap_remove(i));
                JobStatus { job, last_run }
            })
            .collect())
    }
}
