//! Accounts: users, their refresh-token sessions, the access-token deny-list and the
//! settings table ([`AuthStore`]), with the rows they read and write.

use super::error::StoreResult;
use crate::domain::{Role, Timestamp};
use async_trait::async_trait;

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// `Conflict("email_taken")` when the email exists.
    async fn insert_user(&self, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord>;
    /// Bulk insert for load-test provisioning; returns ids in input order.
    async fn insert_users_bulk(&self, users: &[NewUser], now: Timestamp) -> StoreResult<Vec<i64>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// Starts a session holding the hash of its first refresh token; returns its id.
    async fn create_session(
        &self,
        user_id: i64,
        refresh_hash: &str,
        refresh_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<i64>;
    /// Swaps the session's refresh hash `old → new` if `old` is current and unexpired.
    /// Presenting a hash that was already rotated away revokes the session (token reuse).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome>;
    /// Revokes the session and deny-lists the access token `jti` until it expires, writing
    /// a `session.revoked` event, in one transaction.
    async fn revoke_session(
        &self,
        user_id: i64,
        session_id: i64,
        jti: &str,
        access_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn revoked_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>>;
    /// Sessions revoked after `since` (logouts and replayed refresh tokens), with when:
    /// their access tokens may still be alive. A starting node deny-lists them.
    async fn revoked_sessions(&self, since: Timestamp) -> StoreResult<Vec<(i64, Timestamp)>>;
    /// Reads a setting, or stores `value` if it is absent; returns whichever is stored.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub partner_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub partner_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated {
        user_id: i64,
        session_id: i64,
    },
    /// An already-rotated token was presented again; the session is now revoked.
    Reused {
        session_id: i64,
    },
    /// Unknown, expired or revoked.
    Invalid,
}
