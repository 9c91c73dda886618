//! Names no other test, process or run uses: databases, emails, Redis key prefixes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unique across tests, processes and runs: pid + counter + clock.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos()
        % 1_000_000_000_000;
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

pub fn unique_email(prefix: &str) -> String {
    format!("{}@example.test", unique(prefix))
}
