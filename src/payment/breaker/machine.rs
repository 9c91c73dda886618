//! The breaker's bookkeeping, without time sources, tasks or locks: every method takes the
//! current time in milliseconds, so the state machine is tested call by call and by
//! property. [`super::CircuitBreaker`] holds one behind a mutex.

use super::settings::BreakerSettings;
use std::collections::VecDeque;
use std::time::Duration;

/// Where the breaker stands. The numbers are the `payment_gateway_breaker_state` gauge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; their outcomes fill the sliding window.
    Closed,
    /// The open period is over: a few probe calls go through to test the gateway.
    HalfOpen,
    /// Calls are refused without reaching the gateway until the open period ends.
    Open,
}

impl BreakerState {
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Leave to make one call, handed out by [`Machine::try_acquire`] and given back with the
/// call's verdict to [`Machine::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Permit {
    /// The machine's generation when the permit was handed out.
    generation: u64,
}

/// Why a call may not go through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Open for `retry_after` more.
    Open { retry_after: Duration },
    /// Half-open, and every probe slot is taken by a call still running.
    ProbesBusy,
}

/// What a call says about the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The gateway answered (with a result or with a refusal such as "not found").
    Success,
    /// The gateway failed: an error the classifier counts, or a timeout.
    Failure,
    /// The caller gave up on the call (its future was dropped): nothing is known about the
    /// gateway, but a probe slot it held must be given back.
    Abandoned,
}

pub(super) struct Machine {
    settings: BreakerSettings,
    phase: Phase,
    /// Bumped at every change of state. A permit handed out in an earlier state is stale:
    /// a call started before the breaker opened says nothing about the half-open gateway,
    /// and must neither close the breaker nor free a probe slot it never held.
    generation: u64,
}

enum Phase {
    Closed(Window),
    Open { since_ms: i64 },
    HalfOpen { in_flight: usize, successes: usize },
}

impl Machine {
    pub(super) fn new(settings: BreakerSettings) -> Machine {
        let settings = settings.clamped();
        Machine {
            phase: Phase::Closed(Window::new(settings.window_calls)),
            settings,
            generation: 0,
        }
    }

    pub(super) fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed(_) => BreakerState::Closed,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
        }
    }

    /// Moves an open breaker whose time is up to half-open. Called by every read of the
    /// state, so an idle breaker reports half-open on the first look after its open period.
    pub(super) fn refresh(&mut self, now_ms: i64) {
        if let Phase::Open { since_ms } = &mut self.phase {
            // A wall clock stepped back would stretch the open period by the step; start it
            // again from now instead, so it lasts at most `open_ms` from here.
            if now_ms < *since_ms {
                *since_ms = now_ms;
            }
            if now_ms.saturating_sub(*since_ms) >= self.open_ms() {
                self.enter(Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                });
            }
        }
    }

    pub(super) fn try_acquire(&mut self, now_ms: i64) -> Result<Permit, Refusal> {
        self.refresh(now_ms);
        let permit = Permit {
            generation: self.generation,
        };
        let open_ms = self.open_ms();
        match &mut self.phase {
            Phase::Closed(_) => Ok(permit),
            Phase::Open { since_ms } => {
                let left_ms = open_ms.saturating_sub(now_ms.saturating_sub(*since_ms));
                debug_assert!(left_ms > 0, "refresh moves an expired open period on");
                Err(Refusal::Open {
                    retry_after: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
                })
            }
            Phase::HalfOpen { in_flight, .. } => {
                if *in_flight < self.settings.half_open_probes {
                    *in_flight += 1;
                    Ok(permit)
                } else {
                    Err(Refusal::ProbesBusy)
                }
            }
        }
    }

    /// Takes the verdict of a call made under `permit`.
    pub(super) fn record(&mut self, permit: Permit, verdict: Verdict, now_ms: i64) {
        if permit.generation != self.generation {
            return;
        }
        let failed = match verdict {
            Verdict::Success => false,
            Verdict::Failure => true,
            Verdict::Abandoned => {
                if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
                    *in_flight = in_flight.saturating_sub(1);
                }
                return;
            }
        };
        let settings = self.settings;
        match &mut self.phase {
            Phase::Closed(window) => {
                window.push(failed);
                if window.trips(&settings) {
                    self.enter(Phase::Open { since_ms: now_ms });
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                debug_assert!(*in_flight > 0, "a current permit holds a probe slot");
                *in_flight = in_flight.saturating_sub(1);
                if failed {
                    self.enter(Phase::Open { since_ms: now_ms });
                } else {
                    *successes += 1;
                    if *successes >= settings.half_open_successes_to_close {
                        self.enter(Phase::Closed(Window::new(settings.window_calls)));
                    }
                }
            }
            // No permit of the current generation exists while open: entering `Open` bumps
            // the generation and an open breaker hands out none.
            Phase::Open { .. } => {}
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    fn open_ms(&self) -> i64 {
        i64::try_from(self.settings.open_ms).unwrap_or(i64::MAX)
    }
}

/// The outcomes of the last `capacity` calls, oldest first (`true` = failed).
struct Window {
    outcomes: VecDeque<bool>,
    failures: usize,
    capacity: usize,
}

impl Window {
    fn new(capacity: usize) -> Window {
        Window {
            outcomes: VecDeque::with_capacity(capacity),
            failures: 0,
            capacity,
        }
    }

    fn push(&mut self, failed: bool) {
        if self.outcomes.len() == self.capacity && self.outcomes.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.outcomes.push_back(failed);
        self.failures += usize::from(failed);
        debug_assert!(self.outcomes.len() <= self.capacity);
        debug_assert_eq!(self.failures, self.outcomes.iter().filter(|f| **f).count());
    }

    /// At least `min_calls` recorded and a failure rate at or above the threshold, compared
    /// in integers so that 5 of 10 is exactly 50 %.
    fn trips(&self, settings: &BreakerSettings) -> bool {
        let calls = self.outcomes.len();
        calls >= settings.min_calls
            && self.failures * 100 >= usize::from(settings.failure_rate_percent) * calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use BreakerState::*;
    use Verdict::*;

    const T0: i64 = 1_700_000_000_000;
    const OPEN_MS: i64 = 30_000;

    fn machine() -> Machine {
        Machine::new(BreakerSettings::default())
    }

    fn call(m: &mut Machine, now: i64, verdict: Verdict) {
        let permit = m.try_acquire(now).expect("the call goes through");
        m.record(permit, verdict, now);
    }

    fn calls(m: &mut Machine, now: i64, n: usize, verdict: Verdict) {
        for _ in 0..n {
            call(m, now, verdict);
        }
    }

    fn opened_at(now: i64) -> Machine {
        let mut m = machine();
        calls(&mut m, now, 5, Failure);
        assert_eq!(m.state(), Open);
        m
    }

    #[test]
    fn opens_when_five_of_the_last_ten_calls_failed() {
        let mut m = machine();
        calls(&mut m, T0, 5, Success);
        calls(&mut m, T0, 4, Failure);
        assert_eq!(m.state(), Closed, "4 failures of 9 calls is under 50 %");
        call(&mut m, T0, Failure);
        assert_eq!(m.state(), Open, "5 of 10 is 50 %");
    }

    #[test]
    fn four_calls_are_too_few_to_open_even_if_all_failed() {
        let mut m = machine();
        calls(&mut m, T0, 4, Failure);
        assert_eq!(m.state(), Closed);
        call(&mut m, T0, Failure);
        assert_eq!(m.state(), Open);
    }

    #[test]
    fn only_the_last_ten_calls_count() {
        let mut m = machine();
        calls(&mut m, T0, 10, Success);
        calls(&mut m, T0, 4, Failure);
        assert_eq!(m.state(), Closed);
        // 5 of 15 since the start, but 5 of the last 10.
        call(&mut m, T0, Failure);
        assert_eq!(m.state(), Open);

        let mut m = machine();
        calls(&mut m, T0, 2, Failure);
        calls(&mut m, T0, 8, Success);
        // The two oldest failures leave the window as new ones enter: 3 of 10, not 5.
        calls(&mut m, T0, 3, Failure);
        assert_eq!(m.state(), Closed);
        calls(&mut m, T0, 2, Failure);
        assert_eq!(m.state(), Open);
    }

    #[test]
    fn stays_open_thirty_seconds_by_the_clock_then_lets_one_probe_through() {
        let mut m = opened_at(T0);
        assert_eq!(
            m.try_acquire(T0),
            Err(Refusal::Open {
                retry_after: Duration::from_secs(30)
            })
        );
        assert_eq!(
            m.try_acquire(T0 + OPEN_MS - 1),
            Err(Refusal::Open {
                retry_after: Duration::from_millis(1)
            })
        );
        assert_eq!(m.state(), Open);
        let probe = m.try_acquire(T0 + OPEN_MS).expect("a probe after 30 s");
        assert_eq!(m.state(), HalfOpen);
        assert_eq!(m.try_acquire(T0 + OPEN_MS), Err(Refusal::ProbesBusy));
        m.record(probe, Success, T0 + OPEN_MS);
        assert!(
            m.try_acquire(T0 + OPEN_MS).is_ok(),
            "the slot is free again"
        );
    }

    #[test]
    fn three_successful_probes_close_it_with_an_empty_window() {
        let mut m = opened_at(T0);
        let t = T0 + OPEN_MS;
        calls(&mut m, t, 2, Success);
        assert_eq!(m.state(), HalfOpen);
        call(&mut m, t, Success);
        assert_eq!(m.state(), Closed);
        // The failures from before it opened are forgotten: four new ones are too few.
        calls(&mut m, t, 4, Failure);
        assert_eq!(m.state(), Closed);
        call(&mut m, t, Failure);
        assert_eq!(m.state(), Open);
    }

    #[test]
    fn a_failed_probe_reopens_it_for_another_thirty_seconds() {
        let mut m = opened_at(T0);
        let t1 = T0 + OPEN_MS + 5_000;
        calls(&mut m, t1, 2, Success);
        call(&mut m, t1, Failure);
        assert_eq!(m.state(), Open);
        assert_eq!(
            m.try_acquire(t1 + OPEN_MS - 1),
            Err(Refusal::Open {
                retry_after: Duration::from_millis(1)
            })
        );
        // Half-open again, and the two earlier successes no longer count.
        let t2 = t1 + OPEN_MS;
        calls(&mut m, t2, 2, Success);
        assert_eq!(m.state(), HalfOpen);
        call(&mut m, t2, Success);
        assert_eq!(m.state(), Closed);
    }

    #[test]
    fn an_abandoned_probe_gives_its_slot_back_and_counts_nothing() {
        let mut m = opened_at(T0);
        let t = T0 + OPEN_MS;
        let probe = m.try_acquire(t).expect("a probe");
        m.record(probe, Abandoned, t);
        assert_eq!(m.state(), HalfOpen);
        calls(&mut m, t, 3, Success);
        assert_eq!(
            m.state(),
            Closed,
            "three successes, the abandoned probe not one"
        );
    }

    #[test]
    fn a_call_started_before_it_opened_does_not_count_afterwards() {
        let mut m = machine();
        let early_success = m.try_acquire(T0).expect("closed");
        let early_failure = m.try_acquire(T0).expect("closed");
        calls(&mut m, T0, 5, Failure);
        let t = T0 + OPEN_MS;
        let probe = m.try_acquire(t).expect("a probe");
        // Neither frees the probe slot nor moves the half-open breaker.
        m.record(early_success, Success, t);
        m.record(early_failure, Failure, t);
        assert_eq!(m.state(), HalfOpen);
        assert_eq!(m.try_acquire(t), Err(Refusal::ProbesBusy));
        m.record(probe, Success, t);
        assert_eq!(m.state(), HalfOpen);
    }

    #[test]
    fn a_clock_stepped_back_does_not_stretch_the_open_period() {
        let mut m = opened_at(T0);
        let back = T0 - 3_600_000;
        assert_eq!(
            m.try_acquire(back),
            Err(Refusal::Open {
                retry_after: Duration::from_secs(30)
            })
        );
        assert!(m.try_acquire(back + OPEN_MS).is_ok());
    }

    #[test]
    fn settings_out_of_range_are_clamped() {
        let mut m = Machine::new(BreakerSettings {
            window_calls: 0,
            min_calls: 7,
            failure_rate_percent: 200,
            half_open_probes: 0,
            ..BreakerSettings::default()
        });
        // A window of one call, which must have failed (100 %).
        call(&mut m, T0, Success);
        assert_eq!(m.state(), Closed);
        call(&mut m, T0, Failure);
        assert_eq!(m.state(), Open);
        assert!(m.try_acquire(T0 + OPEN_MS).is_ok(), "at least one probe");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        /// Ends the permit at this index (modulo the number held).
        End(usize, Verdict),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let verdict = prop_oneof![Just(Success), Just(Failure), Just(Abandoned)];
        prop_oneof![
            4 => Just(Op::Acquire),
            4 => (any::<usize>(), verdict).prop_map(|(i, v)| Op::End(i, v)),
            2 => (0i64..40_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever the calls and their outcomes: no call goes through while open before
        /// its 30 s are up, a refusal names exactly the time left, and half-open never has
        /// more probes running than allowed.
        #[test]
        fn never_lets_a_call_through_while_open_before_its_time(
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut m = machine();
            let mut now = T0;
            let mut held: Vec<Permit> = Vec::new();
            let mut opened_at: Option<i64> = None;
            for op in ops {
                match op {
                    Op::Acquire => match m.try_acquire(now) {
                        Ok(permit) => {
                            if let Some(at) = opened_at {
                                prop_assert!(now >= at + OPEN_MS, "through {} ms after opening", now - at);
                            }
                            held.push(permit);
                        }
                        Err(Refusal::Open { retry_after }) => {
                            let at = opened_at.expect("refused as open, so it opened");
                            prop_assert!(retry_after > Duration::ZERO);
                            prop_assert_eq!(now + retry_after.as_millis() as i64, at + OPEN_MS);
                        }
                        Err(Refusal::ProbesBusy) => prop_assert_eq!(m.state(), HalfOpen),
                    },
                    Op::End(_, _) if held.is_empty() => {}
                    Op::End(i, verdict) => {
                        let permit = held.remove(i % held.len());
                        let before = m.state();
                        m.record(permit, verdict, now);
                        if m.state() == Open && before != Open {
                            opened_at = Some(now);
                        }
                    }
                    Op::Advance(ms) => now += ms,
                }
                if let Phase::HalfOpen { in_flight, .. } = m.phase {
                    prop_assert!(in_flight <= 1, "{in_flight} probes at once");
                }
            }
        }
    }
}
