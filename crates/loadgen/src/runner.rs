//! The one runner every scenario shares: closed or open loop, timing, and recording.
//!
//! The generator shares its two cores with the server under test, so the hot path is kept
//! cheap: each attempt owns a slot in an array allocated before the run (latency, finish
//! time, outcome, all atomics so tasks never lock), live counters are four atomics, and
//! all analysis happens after the run from the slots.

use crate::outcome::{ErrorKind, Outcome};
use crate::progress::{self, Live};
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Most attempts in one run: every attempt owns a 12-byte slot allocated up front.
pub const MAX_ATTEMPTS: u64 = 10_000_000;

/// Most distinct rejection codes kept apart; any further ones are counted as `other`.
const MAX_CODES: usize = 256;

/// Codes the API is known to answer under load, looked up without a lock.
const KNOWN_CODES: &[&str] = &[
    "out_of_stock",
    "purchase_limit",
    "overloaded",
    "rate_limited",
    "not_released",
    "unavailable",
    "request_timeout",
    "unauthorized",
    "invalid_token",
    "forbidden",
    "not_found",
    "validation_failed",
    "idempotency_mismatch",
    "internal",
    "coupon_sold_out",
    "coupon_already_issued",
    "coupon_not_issuable",
    "other",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// `concurrency` workers, each sending its next attempt when the previous one answers.
    Closed,
    /// Attempts launched on a fixed schedule whatever completes, at most `concurrency` in flight.
    Open { per_second: f64 },
}

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Attempts to make; with `until`, the most that may be made.
    pub attempts: u64,
    pub concurrency: u32,
    pub pace: Pace,
    /// Closed loop: no attempt starts after this long (a sustained test, seed 002's "10
    /// minutes"); attempts under way finish. An open loop's length is its attempts ÷ rate.
    pub until: Option<Duration>,
    /// Closed loop: each worker pauses this long after an answer before its next attempt,
    /// as a user reads the page before ordering again.
    pub think: Duration,
}

/// One HTTP response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What one HTTP response means to a scenario.
pub enum Reply<'a> {
    Ok,
    Rejected(Cow<'a, str>),
    /// Not decided by this answer (a waiting-room ticket, "try again later"): the scenario
    /// follows it up itself, and the attempt ends with what the follow-up settles on.
    Later(FollowUp),
}

/// How an attempt that a scenario followed up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Ok,
    Rejected(String),
    Failed(ErrorKind),
}

/// A scenario's follow-up of one attempt: owns what it needs, so it outlives the answer.
pub type FollowUp = Pin<Box<dyn Future<Output = Settled> + Send>>;

pub trait Scenario: Send + Sync + 'static {
    /// The fully built request of attempt `attempt` (0-based); the runner only sends it.
    fn request(&self, attempt: u64) -> RequestBuilder;
    /// What a response means. Called once per response, on the hot path.
    fn classify<'a>(&self, attempt: u64, answer: &'a Answer) -> Reply<'a>;
    /// The request got no answer. `Some` follows the attempt up (a retry); by default the
    /// attempt has failed.
    fn no_answer(&self, _attempt: u64, _kind: ErrorKind) -> Option<FollowUp> {
        None
    }
}

/// Everything a run recorded, as plain data for the analysis.
#[derive(Debug, Default)]
pub struct Recording {
    pub outcomes: Vec<Outcome>,
    /// From the scheduled start (open loop) or the actual send (closed loop) to the end of the body.
    pub latency_us: Vec<u32>,
    /// When the attempt ended, since the run began.
    pub finish_ms: Vec<u32>,
    /// Rejection codes, indexed by [`Outcome::Rejected`].
    pub codes: Vec<String>,
    pub duration: Duration,
}

#[derive(Default)]
struct Slot {
    latency_us: AtomicU32,
    finish_ms: AtomicU32,
    outcome: AtomicU16,
}

/// Interns rejection codes into small numbers so a slot stays 12 bytes.
struct CodeTable {
    extra: Mutex<Vec<String>>,
}

impl CodeTable {
    fn intern(&self, code: &str) -> u16 {
        if let Some(i) = KNOWN_CODES.iter().position(|k| *k == code) {
            return i as u16;
        }
        // Unknown codes are rare (a proxy's error page, a new code): a lock is fine here.
        let mut extra = self
            .extra
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let i = match extra.iter().position(|k| k == code) {
            Some(i) => i,
            None if extra.len() < MAX_CODES => {
                extra.push(code.to_owned());
                extra.len() - 1
            }
            None => return (KNOWN_CODES.len() - 1) as u16,
        };
        (KNOWN_CODES.len() + i) as u16
    }

    fn names(&self) -> Vec<String> {
        let extra = self
            .extra
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        KNOWN_CODES
            .iter()
            .map(|c| (*c).to_owned())
            .chain(extra.iter().cloned())
            .collect()
    }
}

struct Shared<S> {
    scenario: Arc<S>,
    slots: Box<[Slot]>,
    codes: CodeTable,
    live: Arc<Live>,
    next: AtomicU64,
    attempts: u64,
}

/// Runs `plan` against `scenario`, showing progress on stderr when it is a terminal.
pub async fn run<S: Scenario>(
    scenario: Arc<S>,
    plan: Plan,
    label: &'static str,
    ok_label: &'static str,
) -> anyhow::Result<Recording> {
    anyhow::ensure!(
        (1..=MAX_ATTEMPTS).contains(&plan.attempts),
        "attempts must be 1..={MAX_ATTEMPTS}"
    );
    let slots: Box<[Slot]> = (0..plan.attempts).map(|_| Slot::default()).collect();
    let live = Arc::new(Live::new(plan.attempts));
    let shared = Arc::new(Shared {
        scenario,
        slots,
        codes: CodeTable {
            extra: Mutex::new(Vec::new()),
        },
        live: live.clone(),
        next: AtomicU64::new(0),
        attempts: plan.attempts,
    });
    let bar = progress::Bar::start(live.clone(), label, ok_label);
    let result = match plan.pace {
        Pace::Closed => closed_loop(&shared, plan).await,
        Pace::Open { per_second } => open_loop(&shared, plan.concurrency, per_second).await,
    };
    let duration = live.started.elapsed();
    bar.finish();
    result?;
    // A closed loop stopped by `until` made fewer attempts than it had slots for: numbers
    // are taken only before the deadline and each one taken is used, so they are 0..next.
    let made = match plan.pace {
        Pace::Closed => shared.next.load(Relaxed).min(plan.attempts),
        Pace::Open { .. } => plan.attempts,
    };
    Ok(shared.recording(made, duration))
}

async fn closed_loop<S: Scenario>(shared: &Arc<Shared<S>>, plan: Plan) -> anyhow::Result<()> {
    let workers = u64::from(plan.concurrency).min(shared.attempts);
    let deadline = plan.until.map(|d| shared.live.started + d);
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let shared = shared.clone();
        set.spawn(async move {
            // With a think time, users start spread over one think time rather than all
            // at once: N users thinking T between orders arrive at about N / T per second,
            // not in bursts of N every T.
            if !plan.think.is_zero() {
                tokio::time::sleep(plan.think.mul_f64(worker as f64 / workers as f64)).await;
            }
            // Each worker takes the next attempt number until none are left or time is up.
            let mut first = true;
            loop {
                if !first && !plan.think.is_zero() {
                    // A pause that would end after the deadline ends the user instead, so
                    // the run's length (and its rate) is not stretched by idle users.
                    if deadline.is_some_and(|d| Instant::now() + plan.think >= d) {
                        break;
                    }
                    tokio::time::sleep(plan.think).await;
                }
                first = false;
                // The deadline is read before a number is taken, so every number taken
                // is an attempt made.
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = shared.next.fetch_add(1, Relaxed);
                if n >= shared.attempts {
                    break;
                }
                shared.attempt(n, Instant::now()).await;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| anyhow::anyhow!("a load worker failed: {e}"))?;
    }
    Ok(())
}

async fn open_loop<S: Scenario>(
    shared: &Arc<Shared<S>>,
    concurrency: u32,
    per_second: f64,
) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(concurrency as usize));
    let start = shared.live.started;
    for n in 0..shared.attempts {
        let due = start + Duration::from_secs_f64(n as f64 / per_second);
        // Only sleep when ahead of schedule; above ~1000/s several attempts share a tick.
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    // Latency counts from when the attempt was due, not when it was sent,
                    // so a launcher that falls behind cannot hide queueing (coordinated
                    // omission).
                    shared.attempt(n, due).await;
                    drop(permit);
                });
            }
            Err(_) => shared.record(
                n,
                Outcome::Failed(ErrorKind::Dropped),
                Duration::ZERO,
                Instant::now(),
            ),
        }
    }
    // Every permit back means every launched attempt has finished.
    let _all = in_flight.acquire_many(concurrency).await?;
    Ok(())
}

impl<S: Scenario> Shared<S> {
    /// Latency runs to the attempt's end: with a follow-up, that is when the buyer knew.
    async fn attempt(&self, n: u64, scheduled: Instant) {
        let outcome = match send(self.scenario.request(n)).await {
            Ok(answer) => match self.scenario.classify(n, &answer) {
                Reply::Ok => Outcome::Ok,
                Reply::Rejected(code) => Outcome::Rejected(self.codes.intern(&code)),
                Reply::Later(follow_up) => self.settled(follow_up.await),
            },
            Err(e) => {
                let kind = ErrorKind::of(&e);
                match self.scenario.no_answer(n, kind) {
                    Some(follow_up) => self.settled(follow_up.await),
                    None => Outcome::Failed(kind),
                }
            }
        };
        let done = Instant::now();
        self.record(n, outcome, done.saturating_duration_since(scheduled), done);
    }

    fn settled(&self, settled: Settled) -> Outcome {
        match settled {
            Settled::Ok => Outcome::Ok,
            Settled::Rejected(code) => Outcome::Rejected(self.codes.intern(&code)),
            Settled::Failed(kind) => Outcome::Failed(kind),
        }
    }
}

impl<S> Shared<S> {
    fn record(&self, n: u64, outcome: Outcome, latency: Duration, done: Instant) {
        debug_assert!(
            n < self.attempts,
            "attempt numbers stay below the plan's attempts"
        );
        let slot = &self.slots[n as usize];
        slot.latency_us
            .store(saturating_u32(latency.as_micros()), Relaxed);
        slot.finish_ms.store(
            saturating_u32(
                done.saturating_duration_since(self.live.started)
                    .as_millis(),
            ),
            Relaxed,
        );
        slot.outcome.store(outcome.encode(), Relaxed);
        self.live.count(outcome);
    }

    /// Called after every task has finished (joined, or its permit returned), so the
    /// relaxed loads see every store. Only the first `made` slots were used.
    fn recording(&self, made: u64, duration: Duration) -> Recording {
        let slots = &self.slots[..made as usize];
        Recording {
            outcomes: slots
                .iter()
                .map(|s| Outcome::decode(s.outcome.load(Relaxed)))
                .collect(),
            latency_us: slots.iter().map(|s| s.latency_us.load(Relaxed)).collect(),
            finish_ms: slots.iter().map(|s| s.finish_ms.load(Relaxed)).collect(),
            codes: self.codes.names(),
            duration,
        }
    }
}

/// Sends and reads the whole body: an unread body would keep the connection from reuse.
pub async fn send(request: RequestBuilder) -> reqwest::Result<Answer> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    Ok(Answer {
        status,
        headers,
        body: response.bytes().await?,
    })
}

fn saturating_u32(v: u128) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_interned_once_and_named_back() {
        let table = CodeTable {
            extra: Mutex::new(Vec::new()),
        };
        let oos = table.intern("out_of_stock");
        let teapot = table.intern("http_418");
        assert_eq!(table.intern("http_418"), teapot);
        let names = table.names();
        assert_eq!(names[oos as usize], "out_of_stock");
        assert_eq!(names[teapot as usize], "http_418");
    }

    /// Every attempt goes to a port nothing listens on: refused at once, so the run's
    /// length is the deadline's and the think time's doing.
    struct Refused(reqwest::Client);

    impl Scenario for Refused {
        fn request(&self, _attempt: u64) -> RequestBuilder {
            self.0.get("http://127.0.0.1:1/")
        }
        fn classify<'a>(&self, _attempt: u64, _answer: &'a Answer) -> Reply<'a> {
            Reply::Ok
        }
    }

    #[tokio::test]
    async fn a_closed_loop_stops_at_its_deadline_and_keeps_only_the_attempts_made() {
        let client = crate::api::client(2, Duration::from_secs(1)).unwrap();
        let plan = Plan {
            attempts: 10_000,
            concurrency: 2,
            pace: Pace::Closed,
            until: Some(Duration::from_millis(300)),
            think: Duration::from_millis(100),
        };
        let rec = run(Arc::new(Refused(client)), plan, "t", "ok")
            .await
            .unwrap();
        // Two users, one attempting at 0, 100, 200 ms, the other (started half a think
        // time later) at 50, 150, 250 ms; neither starts a pause that would end after
        // 300 ms. About 6 attempts (a slow machine shifts them), none left pending, and
        // the run ends with the last answer, not a pause later.
        let made = rec.outcomes.len();
        assert!((4..=7).contains(&made), "{made} attempts");
        assert_eq!(rec.latency_us.len(), made);
        assert!(rec.outcomes.iter().all(|o| *o != Outcome::Pending));
        assert!(
            rec.duration < Duration::from_millis(300),
            "{:?}",
            rec.duration
        );
    }

    #[test]
    fn too_many_codes_fold_into_other() {
        let table = CodeTable {
            extra: Mutex::new(Vec::new()),
        };
        for i in 0..MAX_CODES {
            table.intern(&format!("code_{i}"));
        }
        let overflow = table.intern("one_too_many");
        assert_eq!(table.names()[overflow as usize], "other");
    }
}
