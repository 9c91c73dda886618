//! A circuit breaker and a timeout around calls to the payment gateway (issue 11). While
//! the gateway fails, buyers are told at once to come back later (`503
//! payment_gateway_unavailable` with `Retry-After`) instead of each waiting for a timeout,
//! and the gateway is not hammered while it recovers. The breaker knows nothing of the
//! gateway's methods: a gateway decorator wraps each call in [`CircuitBreaker::call`].
//!
//! # States
//! - **Closed**: calls go through. The outcomes of the last `window_calls` calls are kept;
//!   once at least `min_calls` are and `failure_rate_percent` of them or more failed, the
//!   breaker opens.
//! - **Open** for `open_ms`: calls are refused without running
//!   ([`BreakerError::Open`] with the time left).
//! - **Half-open**: up to `half_open_probes` calls at a time go through as probes; the others
//!   are refused with the call timeout as their wait (a probe is settled by then). A probe
//!   that fails opens the breaker for another `open_ms`; `half_open_successes_to_close`
//!   successful probes close it with an empty window.
//!
//! # What counts
//! A timeout and an error the classifier calls a failure ([`CountsAsFailure`], e.g. a 5xx
//! or a dropped connection) count as failures. A refusal from a gateway that works ("payment
//! not found", "not paid yet") counts as a success: the gateway answered. A call whose
//! future is dropped before it ends (the request was cancelled) counts as nothing, and gives
//! back the probe slot it held. A call started before the breaker changed state does not
//! count in the new state.
//!
//! # The numbers ([`BreakerSettings::default`])
//! Seed 002 configures its breakers with Resilience4j: failure rate threshold 50, sliding
//! window 10 calls, minimum 5 calls, 30 s in the open state. We keep them:
//! - **10 calls, count-based**: during a drop, payments arrive in bursts, and ten calls are
//!   the last second or so of traffic; a count window reacts to a broken gateway within a
//!   handful of calls whatever the rate, where a time window would be empty off-peak.
//! - **At least 5 calls**: a single early failure is 100 % of one call; five calls keep
//!   a process that has just started, or a breaker that has just closed, from opening on
//!   one or two unlucky calls.
//! - **50 %**: below it a buyer's retry succeeds more often than not and refusing would cost
//!   more sales than it saves; at half or more the gateway is not serving.
//! - **Open 30 s**: long enough for a gateway's blip (a deploy, a failover, a throttling
//!   window) to pass without our calls piling on; short next to the payment deadline
//!   (`hold_ttl_secs`, 600 s by default), which an open breaker does not extend, so a
//!   buyer told to retry after 30 s still has time to pay.
//! - **1 probe at a time, 3 successes to close** (the seed leaves half-open at
//!   Resilience4j's default of 10 probes judged by their failure rate): a gateway that is
//!   still down costs one call per probe rather than a burst, and three successes in a row
//!   are enough evidence off-peak, where ten probes could take minutes to gather.
//! - **Call timeout 5 s**: well under the server's request timeout
//!   (`request_timeout_ms`, 10 s), so a buyer gets our answer rather than the server's 408,
//!   and still ample for one lookup at the gateway. The gateway's configuration
//!   (`STAMPEDE_PAYMENT_TIMEOUT_MS`) sets it.
//!
//! The breaker is per process: each node learns the gateway's health from its own calls,
//! which needs no coordination and errs only by a few calls per node.
//!
//! The open period is measured on the application's [`Clock`](crate::clock::Clock), so
//! tests move time instead of sleeping; the latency and the call timeout are monotonic.

mod machine;
mod settings;

pub use machine::BreakerState;
pub use settings::BreakerSettings;

use crate::clock::SharedClock;
use crate::metrics::{Metrics, OutcomeLabels};
use machine::{Machine, Permit, Refusal, Verdict};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which errors of a call mean the gateway is failing (a timeout always does).
pub trait CountsAsFailure {
    /// `true` for a failure of the gateway (a 5xx, a dropped connection, an unreadable
    /// answer); `false` for an answer of a working gateway that refuses the request
    /// ("payment not found", a 4xx).
    fn is_failure(&self) -> bool;
}

/// How one call ended, as the `outcome` label of `payment_gateway_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// An error that counts as a failure.
    Failure,
    /// An error that does not (the gateway answered and refused).
    Rejected,
    Timeout,
    /// Refused by the breaker without being made.
    ShortCircuited,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Failure => "failure",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Timeout => "timeout",
            CallOutcome::ShortCircuited => "short_circuited",
        }
    }
}

/// Told of every call and every change of state (`Metrics` implements it). Changes of
/// state and the ends of calls are reported with the breaker's lock held, so that they
/// arrive in order: keep it cheap, and never call back into the breaker.
pub trait BreakerObserver: Send + Sync {
    /// `latency` is `None` for a call the breaker refused.
    fn call_ended(&self, outcome: CallOutcome, latency: Option<Duration>);
    fn state_changed(&self, state: BreakerState);
}

/// The payment gateway's breaker reports to `payment_gateway_calls_total`,
/// `payment_gateway_latency_seconds` and `payment_gateway_breaker_state`.
impl BreakerObserver for Metrics {
    fn call_ended(&self, outcome: CallOutcome, latency: Option<Duration>) {
        let labels = OutcomeLabels {
            outcome: outcome.as_str(),
        };
        self.payment_gateway_calls.get_or_create(&labels).inc();
        if let Some(latency) = latency {
            self.payment_gateway_latency_seconds
                .observe(latency.as_secs_f64());
        }
    }

    fn state_changed(&self, state: BreakerState) {
        self.payment_gateway_breaker_state.set(state.gauge_value());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker refused the call without making it; try again after `retry_after`.
    #[error("payment gateway circuit open; retry after {retry_after:?}")]
    Open { retry_after: Duration },
    /// The call took longer than `call_timeout_ms` and was abandoned. Whether the gateway
    /// acted on it is unknown.
    #[error("payment gateway call timed out")]
    Timeout,
    /// The call's own error, whether it counted as a failure or not.
    #[error(transparent)]
    Inner(E),
}

pub struct CircuitBreaker {
    machine: Mutex<Machine>,
    clock: SharedClock,
    observer: Arc<dyn BreakerObserver>,
    call_timeout: Duration,
}

impl CircuitBreaker {
    /// A closed breaker. Settings out of range are clamped to the nearest valid ones
    /// ([`BreakerSettings::validate`] reports them instead).
    pub fn new(
        settings: BreakerSettings,
        clock: SharedClock,
        observer: Arc<dyn BreakerObserver>,
    ) -> CircuitBreaker {
        let machine = Machine::new(settings);
        observer.state_changed(machine.state());
        CircuitBreaker {
            call_timeout: Duration::from_millis(settings.call_timeout_ms.max(1)),
            machine: Mutex::new(machine),
            clock,
            observer,
        }
    }

    /// The state now (an open breaker whose time is up reads as half-open).
    pub fn state(&self) -> BreakerState {
        self.with_machine(|machine, now_ms| {
            machine.refresh(now_ms);
            machine.state()
        })
    }

    /// Makes the call `f` unless the breaker is open, within the call timeout; its errors
    /// are classified by [`CountsAsFailure`].
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, BreakerError<E>>
    where
        E: CountsAsFailure,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(E::is_failure, f).await
    }

    /// [`Self::call`] with the classifier given as a closure, for error types that do not
    /// implement [`CountsAsFailure`] or calls that judge them differently.
    pub async fn call_classified<T, E, C, F, Fut>(
        &self,
        is_failure: C,
        f: F,
    ) -> Result<T, BreakerError<E>>
    where
        C: FnOnce(&E) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let pending = self.acquire()?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.call_timeout, f()).await;
        let latency = started.elapsed();
        let (outcome, result) = match result {
            Err(_elapsed) => (CallOutcome::Timeout, Err(BreakerError::Timeout)),
            Ok(Ok(value)) => (CallOutcome::Ok, Ok(value)),
            Ok(Err(e)) => {
                let outcome = if is_failure(&e) {
                    CallOutcome::Failure
                } else {
                    CallOutcome::Rejected
                };
                (outcome, Err(BreakerError::Inner(e)))
            }
        };
        pending.finish(outcome, latency);
        result
    }

    fn acquire<E>(&self) -> Result<Pending<'_>, BreakerError<E>> {
        let acquired = self.with_machine(|machine, now_ms| machine.try_acquire(now_ms));
        match acquired {
            Ok(permit) => Ok(Pending {
                breaker: self,
                permit: Some(permit),
            }),
            Err(refusal) => {
                self.observer.call_ended(CallOutcome::ShortCircuited, None);
                let retry_after = match refusal {
                    Refusal::Open { retry_after } => retry_after,
                    // The probes running now end within the call timeout.
                    Refusal::ProbesBusy => self.call_timeout,
                };
                Err(BreakerError::Open { retry_after })
            }
        }
    }

    /// Runs `step` on the machine at the clock's time, then reports a change of state.
    fn with_machine<R>(&self, step: impl FnOnce(&mut Machine, i64) -> R) -> R {
        // The bookkeeping cannot panic half-way, so a poisoned lock holds a sound machine.
        let mut machine = self.machine.lock().unwrap_or_else(PoisonError::into_inner);
        let before = machine.state();
        let result = step(&mut machine, self.clock.now().millis());
        let after = machine.state();
        if after != before {
            if after == BreakerState::Open {
                tracing::warn!(from = ?before, "payment gateway circuit breaker opened");
            } else {
                tracing::info!(from = ?before, to = ?after, "payment gateway circuit breaker");
            }
            self.observer.state_changed(after);
        }
        result
    }
}

/// A permit for a call in flight: dropped without [`Pending::finish`] (the caller's future
/// was dropped mid-call), it gives its probe slot back.
struct Pending<'a> {
    breaker: &'a CircuitBreaker,
    permit: Option<Permit>,
}

impl Pending<'_> {
    fn finish(mut self, outcome: CallOutcome, latency: Duration) {
        let verdict = match outcome {
            CallOutcome::Ok | CallOutcome::Rejected => Verdict::Success,
            CallOutcome::Failure | CallOutcome::Timeout => Verdict::Failure,
            // Never made, so never finished; nothing to learn from it.
            CallOutcome::ShortCircuited => Verdict::Abandoned,
        };
        if let Some(permit) = self.permit.take() {
            let breaker = self.breaker;
            breaker.with_machine(|machine, now_ms| {
                machine.record(permit, verdict, now_ms);
                breaker.observer.call_ended(outcome, Some(latency));
            });
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker
                .with_machine(|machine, now_ms| machine.record(permit, Verdict::Abandoned, now_ms));
        }
    }
}

#[cfg(test)]
mod tests;
