use crate::domain::Timestamp;
use std::collections::HashMap;
use std::sync::RwLock;

/// Access-token ids revoked before their expiry. Checked on every authenticated request,
/// so it is an in-memory map fed from the database at start and from `session.revoked`
/// events afterwards; entries are dropped once the token would have expired anyway.
#[derive(Default)]
pub struct DenyList {
    entries: RwLock<HashMap<String, Timestamp>>,
}

impl DenyList {
    pub fn insert(&self, jti: String, expires_at: Timestamp) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(jti, expires_at);
        }
    }

    pub fn contains(&self, jti: &str) -> bool {
        // A poisoned lock means a writer panicked mid-insert; refusing is the safe answer.
        self.entries
            .read()
            .map(|e| e.contains_key(jti))
            .unwrap_or(true)
    }

    pub fn prune(&self, now: Timestamp) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, expires_at| *expires_at > now);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
