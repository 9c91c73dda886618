//! Passwords (Argon2id), access tokens (short-lived HS256 JWTs) and refresh tokens (random,
//! stored only as a SHA-256 hash, rotated on every use). Logout deny-lists the access token's
//! `jti` on every node through the outbox (see `events::Dispatcher`). A revoked session — a
//! logout, or a refresh token replayed, which may be theft — also deny-lists its session id,
//! which every access token carries (`sid`): the tokens it issued die with it at once rather
//! than live out their 15 minutes. Token lifetimes are judged by the application's clock, not
//! by the JWT library's own read of the wall clock.

mod denylist;
mod hashing;

pub use denylist::DenyList;
pub use hashing::{HashBusy, HashLimiter, HashPermit};

use crate::clock::SharedClock;
use crate::domain::{Role, Timestamp};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an access token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; a string on the wire, as RFC 7519 requires of `sub`.
    #[serde(with = "string_id")]
    pub sub: i64,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<i64>,
    /// Session id; [`NO_SESSION`] for tokens minted by `admin provision-buyers`, which have
    /// no session.
    pub sid: i64,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// The `sid` of access tokens that belong to no session (`admin provision-buyers`): never
/// revoked as a session, since every such token shares it.
pub const NO_SESSION: i64 = 0;

/// How much longer than the access-token lifetime a revoked session stays deny-listed: for a
/// refresh that committed while the session was being revoked, and for the clocks of nodes.
const SESSION_REVOCATION_SLACK_SECS: u64 = 60;

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid or expired token")]
    Invalid,
    #[error("token revoked")]
    Revoked,
}

pub struct AuthService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub denylist: DenyList,
    /// Bounds the Argon2 runs of logins and sign-ups on this node (`hashing`).
    pub hashing: HashLimiter,
    /// Verified against when the email is unknown, so a login takes as long either way and
    /// does not reveal which emails exist.
    dummy_hash: String,
    clock: SharedClock,
}

impl AuthService {
    pub fn new(
        secret: &[u8],
        access_ttl_secs: u64,
        refresh_ttl_secs: u64,
        clock: SharedClock,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked against `clock` in `verify_access`, like every other deadline.
        validation.validate_exp = false;
        AuthService {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_secs,
            refresh_ttl_secs,
            denylist: DenyList::default(),
            hashing: HashLimiter::default(),
            dummy_hash: hash_password_blocking("stampede-dummy-password").unwrap_or_default(),
            clock,
        }
    }

    pub fn issue_access(
        &self,
        user_id: i64,
        role: Role,
        partner_id: Option<i64>,
        session_id: i64,
        ttl_secs: u64,
    ) -> String {
        let now = self.clock.now().millis() / 1000;
        let claims = Claims {
            sub: user_id,
            role,
            pid: partner_id,
            sid: session_id,
            jti: random_token(16),
            iat: now,
            exp: now + ttl_secs as i64,
        };
        // HS256 encoding of a plain struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    pub fn pair(
        &self,
        user_id: i64,
        role: Role,
        partner_id: Option<i64>,
        session_id: i64,
        refresh_token: String,
    ) -> TokenPair {
        TokenPair {
            access_token: self.issue_access(
                user_id,
                role,
                partner_id,
                session_id,
                self.access_ttl_secs,
            ),
            refresh_token,
            token_type: "Bearer",
            expires_in: self.access_ttl_secs,
        }
    }

    /// Checks signature, expiry and the deny-list.
    pub fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        // The JWT rule with no leeway: expired once `exp` is in the past.
        if data.claims.exp < self.clock.now().millis() / 1000 {
            return Err(TokenError::Invalid);
        }
        if self.denylist.contains(&data.claims.jti)
            || self.denylist.contains_session(data.claims.sid)
        {
            return Err(TokenError::Revoked);
        }
        Ok(data.claims)
    }

    /// Refuses, from now on, every access token of `session_id`, which was revoked at
    /// `revoked_at`. None is issued after the revocation (a refresh needs a live session),
    /// so the entry lasts as long as the last one issued before it could, plus a slack.
    pub fn revoke_session(&self, session_id: i64, revoked_at: Timestamp) {
        if session_id == NO_SESSION {
            return;
        }
        let until = revoked_at.plus_secs(self.access_ttl_secs + SESSION_REVOCATION_SLACK_SECS);
        self.denylist.insert_session(session_id, until);
    }

    /// The sessions revoked after this may still have live access tokens at `now`: the
    /// ones a starting node loads into its deny-list.
    pub fn revoked_sessions_since(&self, now: Timestamp) -> Timestamp {
        now.minus_secs(self.access_ttl_secs + SESSION_REVOCATION_SLACK_SECS)
    }

    /// Bounds the password hashes this service computes at once to `permits`.
    pub fn with_hash_concurrency(mut self, permits: usize) -> Self {
        self.hashing = HashLimiter::new(permits);
        self
    }

    /// Whether `password` matches `hash` (as long without a hash, so that an unknown email
    /// takes as long as a known one). [`HashBusy`] at once, without hashing, when
    /// [`Self::hashing`] has no permit free.
    pub async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, HashBusy> {
        let permit = self.hashing.try_permit()?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = permit.verify(password, hash).await;
        Ok(ok && known)
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes); CPU-heavy, so async callers use
/// [`HashPermit::hash`] (requests) or [`hash_password`].
pub fn hash_password_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Unbounded: for the operator's commands, one hash each. Requests hash under a
/// [`HashLimiter`] permit.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    let hash = tokio::task::spawn_blocking(move || hash_password_blocking(&password)).await?;
    hash.map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Refresh tokens are stored only as this hash: a leaked table cannot be replayed.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

mod string_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::time::Duration;

    fn service() -> AuthService {
        AuthService::new(&[7u8; 32], 60, 120, ManualClock::starting_now())
    }

    #[test]
    fn tokens_round_trip_and_tampering_is_caught() {
        let auth = service();
        let token = auth.issue_access(5, Role::Seller, Some(9), 3, 60);
        let claims = auth.verify_access(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.role, claims.pid, claims.sid),
            (5, Role::Seller, Some(9), 3)
        );
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(auth.verify_access(&tampered).is_err());
        let other = AuthService::new(&[8u8; 32], 60, 120, ManualClock::starting_now());
        assert!(other.verify_access(&token).is_err());
    }

    #[test]
    fn deny_listed_tokens_are_refused() {
        let auth = service();
        let token = auth.issue_access(1, Role::Buyer, None, 1, 60);
        let claims = auth.verify_access(&token).unwrap();
        auth.denylist
            .insert(claims.jti, Timestamp::from_millis(i64::MAX));
        assert!(matches!(
            auth.verify_access(&token),
            Err(TokenError::Revoked)
        ));
    }

    #[test]
    fn a_revoked_session_refuses_all_its_tokens_until_they_expire() {
        let clock = ManualClock::starting_now();
        let auth = AuthService::new(&[7u8; 32], 60, 120, clock.clone());
        let (first, second) = (
            auth.issue_access(1, Role::Buyer, None, 4, 60),
            auth.issue_access(1, Role::Buyer, None, 4, 60),
        );
        let other_session = auth.issue_access(1, Role::Buyer, None, 5, 60);
        let provisioned = auth.issue_access(2, Role::Buyer, None, NO_SESSION, 60);
        auth.revoke_session(4, clock.now());
        auth.revoke_session(NO_SESSION, clock.now());
        for token in [&first, &second] {
            assert!(matches!(
                auth.verify_access(token),
                Err(TokenError::Revoked)
            ));
        }
        assert!(auth.verify_access(&other_session).is_ok());
        assert!(
            auth.verify_access(&provisioned).is_ok(),
            "no session to revoke"
        );

        // Kept while a token of the session may live, then dropped.
        clock.advance(Duration::from_secs(60));
        auth.denylist.prune(clock.now());
        assert!(matches!(
            auth.verify_access(&first),
            Err(TokenError::Revoked)
        ));
        clock.advance(Duration::from_secs(SESSION_REVOCATION_SLACK_SECS));
        auth.denylist.prune(clock.now());
        assert!(auth.denylist.is_empty());
    }

    #[test]
    fn tokens_expire_by_the_clock() {
        let clock = ManualClock::starting_now();
        let auth = AuthService::new(&[7u8; 32], 60, 120, clock.clone());
        let token = auth.issue_access(1, Role::Buyer, None, 1, 60);
        clock.advance(Duration::from_secs(60));
        assert!(
            auth.verify_access(&token).is_ok(),
            "valid through its last second"
        );
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            auth.verify_access(&token),
            Err(TokenError::Invalid)
        ));
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let auth = service();
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert_eq!(
            auth.verify_password("correct horse".into(), Some(hash.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(
            auth.verify_password("wrong horse".into(), Some(hash)).await,
            Ok(false)
        );
        assert_eq!(
            auth.verify_password("stampede-dummy-password".into(), None)
                .await,
            Ok(false)
        );
    }
}
