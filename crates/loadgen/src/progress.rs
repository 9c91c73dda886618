//! Live counters and a self-refreshing progress line on stderr. The line is drawn only when
//! stderr is a terminal: piped into a file, it would be thousands of carriage returns.

use crate::outcome::Outcome;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_millis(200);
const BAR_CELLS: u64 = 24;

/// Counts of finished attempts; one relaxed increment per attempt.
pub struct Live {
    pub started: Instant,
    pub total: u64,
    ok: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub ok: u64,
    pub rejected: u64,
    pub errors: u64,
}

impl Snapshot {
    pub fn done(&self) -> u64 {
        self.ok + self.rejected + self.errors
    }
}

impl Live {
    pub fn new(total: u64) -> Live {
        Live {
            started: Instant::now(),
            total,
            ok: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Pending => return,
            Outcome::Ok => &self.ok,
            Outcome::Rejected(_) => &self.rejected,
            Outcome::Failed(_) => &self.errors,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ok: self.ok.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// The progress line's refresher; does nothing when stderr is not a terminal.
pub struct Bar {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Bar {
    pub fn start(live: Arc<Live>, label: &'static str, ok_label: &'static str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar { task: None };
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let text = line(
                    label,
                    ok_label,
                    live.total,
                    live.snapshot(),
                    live.started.elapsed(),
                );
                // "\r" + erase-line redraws in place.
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{text}");
            }
        });
        Bar { task: Some(task) }
    }

    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

pub fn line(label: &str, ok_label: &str, total: u64, s: Snapshot, elapsed: Duration) -> String {
    let done = s.done().min(total);
    let filled = (done * BAR_CELLS).checked_div(total).unwrap_or(0) as usize;
    let bar: String = "#".repeat(filled) + &"-".repeat(BAR_CELLS as usize - filled);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!(
        "{label} [{bar}] {done}/{total} {rate:.0}/s  {ok_label} {}  rejected {}  errors {}  {secs:.1}s",
        s.ok, s.rejected, s.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_and_a_proportional_bar() {
        let s = Snapshot {
            ok: 5,
            rejected: 4,
            errors: 1,
        };
        let text = line("drop", "sold", 20, s, Duration::from_secs(2));
        assert!(
            text.starts_with("drop [############------------] 10/20 5/s"),
            "{text}"
        );
        assert!(text.contains("sold 5  rejected 4  errors 1"), "{text}");
    }

    #[test]
    fn live_counts_by_outcome() {
        let live = Live::new(3);
        live.count(Outcome::Ok);
        live.count(Outcome::Rejected(0));
        live.count(Outcome::Failed(crate::outcome::ErrorKind::Timeout));
        assert_eq!(
            live.snapshot(),
            Snapshot {
                ok: 1,
                rejected: 1,
                errors: 1
            }
        );
    }
}
