//! Time, read in one place. Every deadline, expiry and TTL (payment deadlines, purchase
//! confirmation, points expiry, token lifetimes, coupon windows, leases) asks the
//! application's [`Clock`]; nothing else reads the wall clock. Production runs on
//! [`SystemClock`]. Tests move time forward instead of sleeping: a [`ManualClock`] stands
//! still until told, an [`OffsetClock`] runs with the system clock and jumps when told (for
//! a whole server under test, whose timestamps must still go forward by themselves).
//!
//! Monotonic `Instant`s (latency histograms, timeouts, retry pauses) are not wall-clock
//! reads and stay where they are.

use crate::domain::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The shared handle the application passes around.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock, in UTC milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        // Milliseconds since 1970 fit an i64 for 292 million years.
        Timestamp::from_millis(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to: tests of deadlines and expiry advance it past the
/// deadline and watch what the server does, without waiting for real time to pass.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// Starts at the system clock's current time, so timestamps look ordinary.
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(SystemClock.now().millis()),
        })
    }

    pub fn at(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(start.millis()),
        })
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.millis.store(to.millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// The system clock plus an offset that only grows: time passes as usual, and a test skips
/// ahead past a deadline with [`OffsetClock::advance`] instead of waiting for it.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    pub fn new() -> Arc<OffsetClock> {
        Arc::new(OffsetClock::default())
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        Timestamp::from_millis(SystemClock.now().millis().saturating_add(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(Timestamp::from_millis(1_000));
        assert_eq!(clock.now().millis(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now().millis(), 3_000);
        clock.set(Timestamp::from_millis(10));
        assert_eq!(clock.now().millis(), 10);
    }

    #[test]
    fn an_offset_clock_runs_ahead_of_the_system_clock() {
        let clock = OffsetClock::new();
        let before = SystemClock.now().millis();
        clock.advance(Duration::from_secs(3600));
        let ahead = clock.now().millis() - before;
        assert!((3_600_000..3_660_000).contains(&ahead), "{ahead}");
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now().millis() > 1_577_836_800_000);
    }
}
