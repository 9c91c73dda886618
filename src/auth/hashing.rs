//! A bound on the password hashes a node computes at once.
//!
//! Argon2id is meant to be expensive: 19 MiB and tens of milliseconds of CPU per run, on
//! tokio's blocking pool, which grows to hundreds of threads. Unbounded, a flood of logins
//! or sign-ups would take every core and, thread by thread, gigabytes of memory. So each
//! run first takes a permit with `try_acquire`: when none is free the request is refused at
//! once (503 `overloaded` with `Retry-After`), never queued, so waiting costs nothing.
//!
//! The permit moves into the blocking task and is released when the hash is done, not when
//! the request is: a client that hangs up does not free a slot while its hash still runs.

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every permit is taken: come back shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct HashBusy;

#[derive(Clone)]
pub struct HashLimiter {
    permits: Arc<Semaphore>,
}

/// Twice the cores: enough to keep every core busy while some runs wait for a thread.
impl Default for HashLimiter {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashLimiter::new(cores * 2)
    }
}

impl HashLimiter {
    /// At most `permits` hashes at once (at least one).
    pub fn new(permits: usize) -> HashLimiter {
        HashLimiter {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// A permit for one hash, or [`HashBusy`] at once. Public so that a test can hold one
    /// and see the next login refused.
    pub fn try_permit(&self) -> Result<HashPermit, HashBusy> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map(HashPermit)
            .map_err(|_| HashBusy)
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The right to run one hash; spent by [`HashPermit::hash`] or [`HashPermit::verify`].
pub struct HashPermit(OwnedSemaphorePermit);

impl HashPermit {
    /// Hashes a new password (Argon2id, a fresh salt).
    pub async fn hash(self, password: String) -> anyhow::Result<String> {
        let permit = self.0;
        let hash = tokio::task::spawn_blocking(move || {
            let _held = permit;
            super::hash_password_blocking(&password)
        })
        .await?;
        hash.map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    }

    /// Whether `password` matches the PHC string `hash`; `false` for a malformed hash.
    pub async fn verify(self, password: String, hash: String) -> bool {
        let permit = self.0;
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_bound_a_hash_is_refused_at_once_and_a_slot_frees_when_done() {
        let limiter = HashLimiter::new(1);
        let held = limiter.try_permit().expect("one permit");
        assert_eq!(limiter.try_permit().err(), Some(HashBusy));
        drop(held);
        let permit = limiter.try_permit().expect("free again");
        let hash = permit.hash("correct horse".into()).await.unwrap();
        assert_eq!(limiter.available(), 1, "released once the hash is done");
        let permit = limiter.try_permit().unwrap();
        assert!(permit.verify("correct horse".into(), hash).await);
        assert_eq!(limiter.available(), 1);
    }

    #[test]
    fn zero_permits_means_one() {
        assert_eq!(HashLimiter::new(0).available(), 1);
    }
}
