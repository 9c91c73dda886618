//! The breaker's limits: seed 002's numbers by default, checked for a configuration that
//! sets them.

/// The breaker's limits. [`Default`] is seed 002's; [`crate::payment::breaker`] says why
/// each number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// How many of the latest calls the failure rate is taken over.
    pub window_calls: usize,
    /// How many calls the window must hold before the breaker may open.
    pub min_calls: usize,
    /// The failure rate, in percent of the window's calls, at or above which it opens.
    pub failure_rate_percent: u8,
    /// How long it stays open before probing.
    pub open_ms: u64,
    /// How many probe calls may run at once while half-open.
    pub half_open_probes: usize,
    /// How many successful probes close it.
    pub half_open_successes_to_close: usize,
    /// How long one call may take before it is abandoned and counted as a failure.
    pub call_timeout_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window_calls: 10,
            min_calls: 5,
            failure_rate_percent: 50,
            open_ms: 30_000,
            half_open_probes: 1,
            half_open_successes_to_close: 3,
            call_timeout_ms: 5_000,
        }
    }
}

impl BreakerSettings {
    /// Refuses settings under which the breaker could not work as configured (a minimum
    /// the window can never hold, a zero period…), for configuration to report at start.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.window_calls >= 1, "window_calls must be at least 1"),
            (
                (1..=self.window_calls).contains(&self.min_calls),
                "min_calls must be 1 to window_calls",
            ),
            (
                (1..=100).contains(&self.failure_rate_percent),
                "failure_rate_percent must be 1 to 100",
            ),
            (self.open_ms >= 1, "open_ms must be at least 1"),
            (
                self.half_open_probes >= 1,
                "half_open_probes must be at least 1",
            ),
            (
                self.half_open_successes_to_close >= 1,
                "half_open_successes_to_close must be at least 1",
            ),
            (
                self.call_timeout_ms >= 1,
                "call_timeout_ms must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err((*problem).to_owned()),
            None => Ok(()),
        }
    }

    /// The nearest settings that [`Self::validate`] accepts: a breaker built from settings
    /// nobody validated still works, as close to what was asked as it can.
    pub(super) fn clamped(self) -> BreakerSettings {
        let window_calls = self.window_calls.max(1);
        BreakerSettings {
            window_calls,
            min_calls: self.min_calls.clamp(1, window_calls),
            failure_rate_percent: self.failure_rate_percent.clamp(1, 100),
            open_ms: self.open_ms.max(1),
            half_open_probes: self.half_open_probes.max(1),
            half_open_successes_to_close: self.half_open_successes_to_close.max(1),
            call_timeout_ms: self.call_timeout_ms.max(1),
        }
    }
}
