use crate::domain::Timestamp;
use std::collections::HashMap;
use std::sync::RwLock;

/// Access tokens refused before their expiry: one token by its id (`jti`, the token a
/// logout presented), or every token of a session by the session id they carry (`sid`: a
/// session revoked by a logout or by a replayed refresh token, whose access tokens must die
/// with it). Checked on every authenticated request, so it is in memory, fed from the
/// database at start and from `session.revoked` events afterwards; entries are dropped once
/// every token they cover would have expired anyway.
#[derive(Default)]
pub struct DenyList {
    tokens: RwLock<HashMap<String, Timestamp>>,
    sessions: RwLock<HashMap<i64, Timestamp>>,
}

impl DenyList {
    pub fn insert(&self, jti: String, expires_at: Timestamp) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.insert(jti, expires_at);
        }
    }

    /// Refuses every token of `session_id` until `until`; a later `until` learnt from
    /// another source wins.
    pub fn insert_session(&self, session_id: i64, until: Timestamp) {
        if let Ok(mut sessions) = self.sessions.write() {
            let entry = sessions.entry(session_id).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    pub fn contains(&self, jti: &str) -> bool {
        // A poisoned lock means a writer panicked mid-insert; refusing is the safe answer.
        self.tokens
            .read()
            .map(|t| t.contains_key(jti))
            .unwrap_or(true)
    }

    pub fn contains_session(&self, session_id: i64) -> bool {
        self.sessions
            .read()
            .map(|s| s.contains_key(&session_id))
            .unwrap_or(true)
    }

    pub fn prune(&self, now: Timestamp) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.retain(|_, expires_at| *expires_at > now);
        }
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.retain(|_, until| *until > now);
        }
    }

    pub fn len(&self) -> usize {
        let tokens = self.tokens.read().map(|t| t.len()).unwrap_or(0);
        let sessions = self.sessions.read().map(|s| s.len()).unwrap_or(0);
        tokens + sessions
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
