use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{AuthUser, Json};
use crate::auth::{random_token, token_hash, TokenPair};
use crate::domain::{Email, Password, Role, Timestamp};
use crate::server::AppState;
use crate::store::{NewUser, RotateOutcome, UserRecord};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Random bytes in a refresh token (256 bits).
const REFRESH_TOKEN_BYTES: usize = 32;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub partner_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            role: u.role,
            partner_id: u.partner_id,
        }
    }
}

impl From<TokenPair> for TokenView {
    fn from(p: TokenPair) -> Self {
        TokenView {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: p.token_type.to_owned(),
            expires_in: p.expires_in,
        }
    }
}

/// Creates an account with a freshly hashed password (used by signup, seller creation and
/// the `admin create-user` command).
pub async fn create_account(
    store: &dyn crate::store::Store,
    email: &str,
    password: String,
    role: Role,
    partner_id: Option<i64>,
) -> ApiResult<UserRecord> {
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    let password_hash = crate::auth::hash_password(password.expose().to_owned())
        .await
        .map_err(ApiError::internal)?;
    let user = NewUser {
        email: email.as_str().to_owned(),
        password_hash,
        role,
        partner_id,
    };
    Ok(store.insert_user(&user, Timestamp::now()).await?)
}

#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = Credentials,
    responses((status = 201, body = UserView), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    let user = create_account(
        state.store.as_ref(),
        &body.email,
        body.password,
        Role::Buyer,
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))))
}

async fn start_session(state: &AppState, user: &UserRecord) -> ApiResult<TokenPair> {
    let refresh = random_token(REFRESH_TOKEN_BYTES);
    let now = Timestamp::now();
    let session_id = state
        .store
        .create_session(
            user.id,
            &token_hash(&refresh),
            now.plus_secs(state.auth.refresh_ttl_secs),
            now,
        )
        .await?;
    Ok(state
        .auth
        .pair(user.id, user.role, user.partner_id, session_id, refresh))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, body = TokenView), (status = 401, body = super::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> ApiResult<axum::Json<TokenView>> {
    let invalid = || ApiError::new(ErrorCode::InvalidCredentials, "wrong email or password");
    // Bound the work an attacker can make us do before hashing.
    if body.password.len() > crate::domain::values::MAX_PASSWORD_BYTES {
        return Err(invalid());
    }
    let user = match Email::parse(&body.email) {
        Ok(email) => state.store.user_by_email(email.as_str()).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    if !state.auth.verify_password(body.password, hash).await {
        return Err(invalid());
    }
    let user = user.ok_or_else(invalid)?;
    Ok(axum::Json(start_session(&state, &user).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenView), (status = 401, body = super::error::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<axum::Json<TokenView>> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "invalid, expired or revoked refresh token",
        )
    };
    if body.refresh_token.is_empty() || body.refresh_token.len() > 256 {
        return Err(invalid());
    }
    let next = random_token(REFRESH_TOKEN_BYTES);
    let now = Timestamp::now();
    let outcome = state
        .store
        .rotate_refresh(
            &token_hash(&body.refresh_token),
            &token_hash(&next),
            now.plus_secs(state.auth.refresh_ttl_secs),
            now,
        )
        .await?;
    let RotateOutcome::Rotated {
        user_id,
        session_id,
    } = outcome
    else {
        if outcome == RotateOutcome::Reused {
            tracing::warn!("refresh token reuse detected; session revoked");
        }
        return Err(invalid());
    };
    let user = state.store.user_by_id(user_id).await?.ok_or_else(invalid)?;
    Ok(axum::Json(
        state
            .auth
            .pair(user.id, user.role, user.partner_id, session_id, next)
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    let claims = &user.0;
    let expires_at = Timestamp::from_millis(claims.exp.saturating_mul(1000));
    state
        .store
        .revoke_session(
            claims.sub,
            claims.sid,
            &claims.jti,
            expires_at,
            Timestamp::now(),
        )
        .await?;
    // This node refuses the token at once; the others learn it from the outbox, and at once
    // through Redis when it is configured.
    state.auth.denylist.insert(claims.jti.clone(), expires_at);
    state
        .cluster
        .revocations
        .announce(&claims.jti, expires_at)
        .await;
    state.outbox_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = super::error::ErrorBody)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<UserView>> {
    let record = state
        .store
        .user_by_id(user.id())
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(axum::Json(UserView::from(&record)))
}
