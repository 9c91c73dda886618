//! One scheduler for the background work of a node (DESIGN §4): each [`Job`] runs on its
//! timer and, when it has one, on its wake-up; a job that must run on one node at a time
//! first takes its lease in the `leases` table, in the spirit of ShedLock. The lease is a
//! conditional upsert (`store::LeaseStore::try_lease`), held for two intervals and renewed
//! by its holder at every run, so another node takes over within two intervals of the
//! holder's death. Each run of such a job is recorded (`job_runs`: start, duration,
//! outcome, holder) for `GET /api/v1/admin/jobs`; jobs on every node are not, as the
//! sweeper alone would then write once a second per node.

use crate::app::jobs::ScheduledJob;
use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::metrics::{JobRunLabels, Metrics};
use crate::store::{JobRunRecord, Store, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Characters of a failed run's error kept in `job_runs`.
const RUN_ERROR_MAX_CHARS: usize = 500;

/// Where a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On every node (work that is per node, or safe and cheap to repeat).
    EveryNode,
    /// On the one node holding the job's lease, named after the job.
    OneNode,
}

/// When a job runs.
#[derive(Clone)]
pub struct Schedule {
    pub every: Duration,
    /// Also once at start, for what happened while no node ran.
    pub at_start: bool,
    pub scope: Scope,
    /// Runs the job early when notified (an event arrived, a queue filled).
    pub wake: Option<Arc<Notify>>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Timer,
    Woken,
}

#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Its name in logs and, for [`Scope::OneNode`], its lease.
    fn name(&self) -> &'static str;
    fn schedule(&self) -> Schedule;
    /// Its schedule as an operator reads it.
    fn describe(&self) -> String {
        format!("every {} s", self.schedule().every.as_secs())
    }
    async fn run(&self, now: Timestamp, trigger: Trigger) -> anyhow::Result<()>;
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// This node's name in `leases`: unique per process.
    holder: String,
    jobs: Vec<Arc<dyn Job>>,
    /// Counts every run in `job_runs_total` when set.
    metrics: Option<Arc<Metrics>>,
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, holder: String) -> Scheduler {
        Scheduler {
            store,
            clock,
            holder,
            jobs: Vec::new(),
            metrics: None,
        }
    }

    /// Counts each run of each job in `metrics` (`job_runs_total{job,outcome}`).
    pub fn counting(mut self, metrics: Arc<Metrics>) -> Scheduler {
        self.metrics = Some(metrics);
        self
    }

    pub fn add(&mut self, job: Arc<dyn Job>) {
        self.jobs.push(job);
    }

    /// Every job added, with its schedule, in the order added.
    pub fn scheduled(&self) -> Vec<ScheduledJob> {
        self.jobs
            .iter()
            .map(|job| ScheduledJob {
                name: job.name(),
                schedule: job.describe(),
                one_node: job.schedule().scope == Scope::OneNode,
            })
            .collect()
    }

    /// Spawns one task per job; each ends when `stop` fires.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let this = Arc::new(self);
        this.jobs
            .iter()
            .map(|job| tokio::spawn(this.clone().drive(job.clone(), stop.clone())))
            .collect()
    }

    async fn drive(self: Arc<Self>, job: Arc<dyn Job>, mut stop: watch::Receiver<bool>) {
        let schedule = job.schedule();
        let mut timer = tokio::time::interval(schedule.every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if !schedule.at_start {
            // An interval's first tick is immediate.
            timer.tick().await;
        }
        loop {
            let trigger = tokio::select! {
                _ = timer.tick() => Trigger::Timer,
                _ = woken(&schedule.wake) => Trigger::Woken,
                _ = stop.changed() => return,
            };
            if let Err(e) = self.run_once(job.as_ref(), trigger).await {
                tracing::warn!(job = job.name(), error = %e, "job run failed");
            }
        }
    }

    /// Runs the job once now if this node may: always for [`Scope::EveryNode`], only while
    /// holding the lease for [`Scope::OneNode`]. Returns whether it ran.
    pub async fn run_once(&self, job: &dyn Job, trigger: Trigger) -> anyhow::Result<bool> {
        let now = self.clock.now();
        let schedule = job.schedule();
        if schedule.scope == Scope::OneNode {
            let taken = lease(
                self.store.as_ref(),
                job.name(),
                &self.holder,
                &schedule,
                now,
            );
            if !taken.await? {
                return Ok(false);
            }
        }
        let started = std::time::Instant::now();
        let outcome = job.run(now, trigger).await;
        if schedule.scope == Scope::OneNode {
            self.record(job.name(), now, started.elapsed(), &outcome)
                .await;
        }
        if let Some(metrics) = &self.metrics {
            let labels = JobRunLabels {
                job_name: job.name().to_owned(),
                outcome: if outcome.is_ok() { "ok" } else { "failed" },
            };
            metrics.job_runs.get_or_create(&labels).inc();
        }
        outcome?;
        Ok(true)
    }

    /// Keeps a lease-held run's outcome; a failure to keep it is logged, as the run itself
    /// happened.
    async fn record(
        &self,
        name: &str,
        started_at: Timestamp,
        took: Duration,
        outcome: &anyhow::Result<()>,
    ) {
        let run = JobRunRecord {
            name: name.to_owned(),
            holder: self.holder.clone(),
            started_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            error: outcome
                .as_ref()
                .err()
                .map(|e| format!("{e:#}").chars().take(RUN_ERROR_MAX_CHARS).collect()),
        };
        if let Err(e) = self.store.record_job_run(&run).await {
            tracing::warn!(job = name, error = %e, "recording the job's run failed");
        }
    }
}

/// Takes or renews the lease `name` for `holder` until two intervals after `now`; `true`
/// while `holder` has it.
pub async fn lease(
    store: &dyn Store,
    name: &str,
    holder: &str,
    schedule: &Schedule,
    now: Timestamp,
) -> StoreResult<bool> {
    let lease_ms = i64::try_from(schedule.every.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    let until = Timestamp::from_millis(now.millis().saturating_add(lease_ms));
    store.try_lease(name, holder, until, now).await
}

/// Completes when the job is woken; never for a job without a wake-up.
async fn woken(wake: &Option<Arc<Notify>>) {
    match wake {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::open::connect;
    use crate::store::PoolOptions;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    /// Counts its runs and reports each run's trigger.
    struct Counting {
        scope: Scope,
        wake: Option<Arc<Notify>>,
        runs: AtomicUsize,
        seen: mpsc::UnboundedSender<Trigger>,
    }

    #[async_trait]
    impl Job for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        fn schedule(&self) -> Schedule {
            Schedule {
                every: Duration::from_secs(3600),
                at_start: true,
                scope: self.scope,
                wake: self.wake.clone(),
            }
        }

        async fn run(&self, _now: Timestamp, trigger: Trigger) -> anyhow::Result<()> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let _ = self.seen.send(trigger);
            Ok(())
        }
    }

    fn counting(scope: Scope) -> (Arc<Counting>, mpsc::UnboundedReceiver<Trigger>) {
        let (seen, rx) = mpsc::unbounded_channel();
        let job = Counting {
            scope,
            wake: Some(Arc::new(Notify::new())),
            runs: AtomicUsize::new(0),
            seen,
        };
        (Arc::new(job), rx)
    }

    async fn store() -> (Arc<dyn Store>, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "stampede-scheduler-{}-{}.db",
            std::process::id(),
            rand::random::<u64>()
        ));
        let options = PoolOptions {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        };
        let url = format!("sqlite://{}", path.display());
        let store = connect(&url, &options).await.unwrap();
        store.migrate(Timestamp::from_millis(0)).await.unwrap();
        (store, path)
    }

    #[tokio::test]
    async fn a_one_node_job_runs_only_where_its_lease_is_held() {
        let (store, path) = store().await;
        let clock = ManualClock::at(Timestamp::from_millis(1_000_000));
        let node_a = Scheduler::new(store.clone(), clock.clone(), "node-a".into());
        let node_b = Scheduler::new(store.clone(), clock.clone(), "node-b".into());
        let (job, _) = counting(Scope::OneNode);
        assert!(node_a.run_once(job.as_ref(), Trigger::Timer).await.unwrap());
        assert!(!node_b.run_once(job.as_ref(), Trigger::Timer).await.unwrap());
        // The holder renews its lease at every run; the other waits for it to lapse.
        assert!(node_a.run_once(job.as_ref(), Trigger::Timer).await.unwrap());
        clock.advance(Duration::from_secs(2 * 3600 + 1));
        assert!(node_b.run_once(job.as_ref(), Trigger::Timer).await.unwrap());
        assert!(!node_a.run_once(job.as_ref(), Trigger::Timer).await.unwrap());
        assert_eq!(job.runs.load(Ordering::SeqCst), 3);

        let (everywhere, _) = counting(Scope::EveryNode);
        assert!(node_a
            .run_once(everywhere.as_ref(), Trigger::Timer)
            .await
            .unwrap());
        assert!(node_b
            .run_once(everywhere.as_ref(), Trigger::Timer)
            .await
            .unwrap());
        assert_eq!(everywhere.runs.load(Ordering::SeqCst), 2);
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// Fails every run.
    struct Failing;

    #[async_trait]
    impl Job for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }

        fn schedule(&self) -> Schedule {
            Schedule {
                every: Duration::from_secs(60),
                at_start: false,
                scope: Scope::OneNode,
                wake: None,
            }
        }

        async fn run(&self, _now: Timestamp, _trigger: Trigger) -> anyhow::Result<()> {
            anyhow::bail!("the books do not balance")
        }
    }

    #[tokio::test]
    async fn each_lease_held_run_is_recorded_with_its_outcome() {
        let (store, path) = store().await;
        let clock = ManualClock::at(Timestamp::from_millis(5_000));
        let node_a = Scheduler::new(store.clone(), clock.clone(), "node-a".into());
        assert!(node_a.run_once(&Failing, Trigger::Timer).await.is_err());
        let (ok, _) = counting(Scope::OneNode);
        assert!(node_a.run_once(ok.as_ref(), Trigger::Timer).await.unwrap());
        let (everywhere, _) = counting(Scope::EveryNode);
        assert!(node_a
            .run_once(everywhere.as_ref(), Trigger::Timer)
            .await
            .unwrap());
        // The every-node job shares its name with the lease-held one: one row, its own.
        let runs = store.job_runs().await.unwrap();
        let summary: Vec<_> = runs
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.holder.as_str(),
                    r.started_at,
                    r.error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("counting", "node-a", Timestamp::from_millis(5_000), None),
                (
                    "failing",
                    "node-a",
                    Timestamp::from_millis(5_000),
                    Some("the books do not balance")
                ),
            ]
        );
        assert_eq!(
            node_a.scheduled(),
            Vec::<ScheduledJob>::new(),
            "run_once schedules nothing"
        );
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn a_job_runs_at_start_then_when_woken_until_stopped() {
        let (store, path) = store().await;
        let clock = ManualClock::at(Timestamp::from_millis(0));
        let mut scheduler = Scheduler::new(store.clone(), clock, "node-a".into());
        let (job, mut seen) = counting(Scope::EveryNode);
        scheduler.add(job.clone());
        let (stop, stopped) = watch::channel(false);
        let tasks = scheduler.spawn(stopped);
        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(within, seen.recv()).await.unwrap();
        assert_eq!(first, Some(Trigger::Timer), "the first run is at start");
        job.wake.as_ref().unwrap().notify_one();
        let woken = tokio::time::timeout(within, seen.recv()).await.unwrap();
        assert_eq!(woken, Some(Trigger::Woken));
        let _ = stop.send(true);
        for task in tasks {
            tokio::time::timeout(within, task).await.unwrap().unwrap();
        }
        assert_eq!(
            job.runs.load(Ordering::SeqCst),
            2,
            "the hourly timer did not fire"
        );
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
