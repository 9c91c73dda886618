//! Accounts and sessions: creating users (signup, sellers, the `admin create-user`
//! command), logging in, rotating refresh tokens, logging out, and provisioning buyers in
//! bulk for load tests. Passwords and tokens themselves are `crate::auth`'s.

use super::error::{require, AppError, AppResult};
use crate::auth::{random_token, token_hash, AuthService, TokenPair};
use crate::clock::SharedClock;
use crate::cluster::login_attempts::Attempts;
use crate::cluster::revocation::Revocations;
use crate::domain::values::MAX_PASSWORD_BYTES;
use crate::domain::{Actor, Email, Password, Role, Timestamp};
use crate::events::EventSync;
use crate::metrics::{AbuseLabels, Metrics};
use crate::store::{NewUser, RotateOutcome, Store, UserRecord};
use std::net::IpAddr;
use std::sync::Arc;

/// Random bytes in a refresh token (256 bits).
const REFRESH_TOKEN_BYTES: usize = 32;
/// Longest refresh token looked up; anything longer was never issued.
const MAX_REFRESH_TOKEN_BYTES: usize = 256;
/// Rows per bulk insert transaction when provisioning.
const PROVISION_CHUNK_USERS: usize = 5000;
pub const MAX_PROVISIONED_BUYERS: usize = 1_000_000;

pub struct Accounts {
    pub store: Arc<dyn Store>,
    pub auth: Arc<AuthService>,
    pub clock: SharedClock,
    /// Tells the other nodes at once that a logged-out token is refused.
    pub revocations: Arc<dyn Revocations>,
    pub events: EventSync,
    /// Failed logins per account and address, sign-ups per address (across nodes with
    /// Redis).
    pub attempts: Attempts,
    pub metrics: Arc<Metrics>,
}

/// The access token being logged out.
pub struct Session<'a> {
    pub user_id: i64,
    pub session_id: i64,
    pub jti: &'a str,
    /// The token's `exp`, in seconds.
    pub expires_at_secs: i64,
}

impl Accounts {
    /// Creates an account with a freshly hashed password (sellers; buyers sign up through
    /// [`Self::signup`]).
    pub async fn create(
        &self,
        email: &str,
        password: String,
        role: Role,
        partner_id: Option<i64>,
    ) -> AppResult<UserRecord> {
        let (email, password) = (Email::parse(email)?, Password::parse(password)?);
        let password_hash = self.hash(password).await?;
        insert_account(
            self.store.as_ref(),
            self.clock.now(),
            &email,
            password_hash,
            role,
            partner_id,
        )
        .await
    }

    /// A buyer signs up from `ip`. Sign-ups are counted per address once the input is
    /// valid (bad input is refused before, and costs nothing): the next one past the limit
    /// is refused before any hash.
    pub async fn signup(
        &self,
        email: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> AppResult<UserRecord> {
        let (email, password) = (Email::parse(email)?, Password::parse(password)?);
        self.attempts
            .signup(ip)
            .await
            .map_err(|retry_after| AppError::TooManyAttempts { retry_after })?;
        let password_hash = self.hash(password).await?;
        insert_account(
            self.store.as_ref(),
            self.clock.now(),
            &email,
            password_hash,
            Role::Buyer,
            None,
        )
        .await
    }

    /// Hashes under the node's bound on password hashes; refused at once when it is full.
    async fn hash(&self, password: Password) -> AppResult<String> {
        let permit = self
            .auth
            .hashing
            .try_permit()
            .inspect_err(|_| self.hash_busy())?;
        permit
            .hash(password.expose().to_owned())
            .await
            .map_err(|e| AppError::Internal(e.to_string()))
    }

    fn hash_busy(&self) {
        let reason = "password_hash_busy";
        self.metrics
            .abuse_refused
            .get_or_create(&AbuseLabels { reason })
            .inc();
    }

    /// A seller account of an existing partner, made by an admin.
    pub async fn create_seller(
        &self,
        actor: &Actor,
        partner_id: i64,
        email: &str,
        password: String,
    ) -> AppResult<UserRecord> {
        require(actor, &[Role::Admin])?;
        self.store
            .partner(partner_id)
            .await?
            .ok_or_else(|| AppError::not_found("partner"))?;
        self.create(email, password, Role::Seller, Some(partner_id))
            .await
    }

    /// Checks the password (as long for an unknown email as for a known one) and starts a
    /// session. An account or address with too many recent failures is refused before its
    /// password is checked, so a locked-out guess costs no hash; so is a login when the
    /// node already checks as many passwords as it may at once.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> AppResult<TokenPair> {
        // Bound the work an attacker can make us do before hashing.
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::InvalidCredentials);
        }
        // The account is the normalised email whether or not it parses or exists: a
        // refusal must not tell which emails are registered.
        let parsed = Email::parse(email).ok();
        let account = parsed.as_ref().map_or_else(
            || email.trim().to_ascii_lowercase(),
            |email| email.as_str().to_owned(),
        );
        self.attempts
            .login_allowed(&account, ip)
            .await
            .map_err(|retry_after| AppError::TooManyAttempts { retry_after })?;
        let user = match &parsed {
            Some(email) => self.store.user_by_email(email.as_str()).await?,
            None => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self
            .auth
            .verify_password(password, hash)
            .await
            .inspect_err(|_| self.hash_busy())?;
        let Some(user) = user.filter(|_| verified) else {
            self.attempts.login_failed(&account, ip).await;
            return Err(AppError::InvalidCredentials);
        };
        self.attempts.login_succeeded(&account).await;
        let refresh = random_token(REFRESH_TOKEN_BYTES);
        let now = self.clock.now();
        let session_id = self
            .store
            .create_session(
                user.id,
                &token_hash(&refresh),
                now.plus_secs(self.auth.refresh_ttl_secs),
                now,
            )
            .await?;
        Ok(self
            .auth
            .pair(user.id, user.role, user.partner_id, session_id, refresh))
    }

    /// Swaps a refresh token for a new pair. Presenting one that was already rotated away
    /// revokes its session (token reuse).
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<TokenPair> {
        if refresh_token.is_empty() || refresh_token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Err(AppError::InvalidRefreshToken);
        }
        let next = random_token(REFRESH_TOKEN_BYTES);
        let now = self.clock.now();
        let outcome = self
            .store
            .rotate_refresh(
                &token_hash(refresh_token),
                &token_hash(&next),
                now.plus_secs(self.auth.refresh_ttl_secs),
                now,
            )
            .await?;
        let (user_id, session_id) = match outcome {
            RotateOutcome::Rotated {
                user_id,
                session_id,
            } => (user_id, session_id),
            RotateOutcome::Reused { session_id } => {
                // The session's access tokens die with it: here at once, elsewhere from
                // its `session.revoked` event.
                self.auth.revoke_session(session_id, now);
                self.events.wake();
                tracing::warn!(session_id, "refresh token reuse detected; session revoked");
                return Err(AppError::InvalidRefreshToken);
            }
            RotateOutcome::Invalid => return Err(AppError::InvalidRefreshToken),
        };
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AppError::InvalidRefreshToken)?;
        Ok(self
            .auth
            .pair(user.id, user.role, user.partner_id, session_id, next))
    }

    /// Ends the session: its refresh token stops working and its access tokens are refused
    /// on every node.
    pub async fn logout(&self, session: &Session<'_>) -> AppResult<()> {
        let expires_at = Timestamp::from_millis(session.expires_at_secs.saturating_mul(1000));
        let now = self.clock.now();
        self.store
            .revoke_session(
                session.user_id,
                session.session_id,
                session.jti,
                expires_at,
                now,
            )
            .await?;
        // This node refuses the token at once; the others learn it from the outbox, and at
        // once through Redis when it is configured.
        self.auth
            .denylist
            .insert(session.jti.to_owned(), expires_at);
        self.auth.revoke_session(session.session_id, now);
        self.revocations.announce(session.jti, expires_at).await;
        self.events.wake();
        Ok(())
    }

    pub async fn user(&self, id: i64) -> AppResult<UserRecord> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| AppError::not_found("user"))
    }
}

/// Stores a new account whose password is already hashed.
async fn insert_account(
    store: &dyn Store,
    now: Timestamp,
    email: &Email,
    password_hash: String,
    role: Role,
    partner_id: Option<i64>,
) -> AppResult<UserRecord> {
    let user = NewUser {
        email: email.as_str().to_owned(),
        password_hash,
        role,
        partner_id,
    };
    Ok(store.insert_user(&user, now).await?)
}

/// Creates an account with a freshly hashed password, for the operator's commands: one
/// hash each, outside the requests' bound on concurrent hashes.
pub async fn create_account(
    store: &dyn Store,
    now: Timestamp,
    email: &str,
    password: String,
    role: Role,
    partner_id: Option<i64>,
) -> AppResult<UserRecord> {
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    let password_hash = crate::auth::hash_password(password.expose().to_owned())
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    insert_account(store, now, &email, password_hash, role, partner_id).await
}

/// The operator's `admin create-user`: any role, a seller with its partner.
pub async fn create_user(
    store: &dyn Store,
    now: Timestamp,
    email: &str,
    password: String,
    role: Role,
    partner_id: Option<i64>,
) -> anyhow::Result<i64> {
    if (role == Role::Seller) != partner_id.is_some() {
        anyhow::bail!("a seller needs --partner, and only a seller may have one");
    }
    if let Some(partner_id) = partner_id {
        if store.partner(partner_id).await?.is_none() {
            anyhow::bail!("partner {partner_id} does not exist");
        }
    }
    let user = create_account(store, now, email, password, role, partner_id).await?;
    Ok(user.id)
}

/// Creates `count` buyers in bulk and returns one access token each, for load tests.
///
/// They share one Argon2id hash of a random password that is thrown away: nobody can log
/// in as them, and 50,000 accounts cost one hash instead of 50,000 (about 40 ms each).
pub async fn provision_buyers(
    store: &dyn Store,
    auth: &AuthService,
    now: Timestamp,
    count: usize,
    token_ttl_secs: u64,
) -> anyhow::Result<Vec<String>> {
    if !(1..=MAX_PROVISIONED_BUYERS).contains(&count) {
        anyhow::bail!("count must be 1..={MAX_PROVISIONED_BUYERS}");
    }
    let password_hash = crate::auth::hash_password(random_token(32)).await?;
    let run = random_token(6)
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    let mut tokens = Vec::with_capacity(count);
    for start in (0..count).step_by(PROVISION_CHUNK_USERS) {
        let end = (start + PROVISION_CHUNK_USERS).min(count);
        let users: Vec<NewUser> = (start..end)
            .map(|i| NewUser {
                email: format!("buyer-{run}-{i}@loadtest.invalid"),
                password_hash: password_hash.clone(),
                role: Role::Buyer,
                partner_id: None,
            })
            .collect();
        let ids = store.insert_users_bulk(&users, now).await?;
        tokens.extend(
            ids.into_iter()
                .map(|id| auth.issue_access(id, Role::Buyer, None, 0, token_ttl_secs)),
        );
    }
    Ok(tokens)
}
