//! Signing up, logging in, refreshing and ending sessions, and who the caller is. The use
//! cases are `app::accounts`.

use super::error::ApiResult;
use super::extract::{AuthUser, Json};
use super::limits::ClientIp;
use super::state::AppState;
use crate::app::accounts::Session;
use crate::auth::TokenPair;
use crate::domain::Role;
use crate::store::UserRecord;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// `name@example.com`, at most 254 bytes; case does not matter.
    #[schema(
        max_length = 254,
        pattern = r"^[!#-?A-~]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]*)*\.[A-Za-z0-9-]+$"
    )]
    pub email: String,
    /// 8 characters to 128 bytes.
    #[schema(min_length = 8, max_length = 128)]
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

#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = Credentials,
    responses((status = 201, body = UserView), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many sign-ups from this address (`signups_per_ip_max` per `signup_window_secs`); see `Retry-After`", body = super::error::ErrorBody),
        (status = 503, description = "`overloaded`: too many passwords being hashed right now; see `Retry-After`", body = super::error::ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<Credentials>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    let accounts = &state.app.accounts;
    let user = accounts.signup(&body.email, body.password, ip).await?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, body = TokenView), (status = 401, body = super::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many failed logins for this email or from this address (`login_failures_max` per `login_failure_window_secs`); the password was not checked; see `Retry-After`", body = super::error::ErrorBody),
        (status = 503, description = "`overloaded`: too many passwords being checked right now; see `Retry-After`", body = super::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<Credentials>,
) -> ApiResult<axum::Json<TokenView>> {
    let pair = state
        .app
        .accounts
        .login(&body.email, body.password, ip)
        .await?;
    Ok(axum::Json(pair.into()))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenView), (status = 401, body = super::error::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<axum::Json<TokenView>> {
    let pair = state.app.accounts.refresh(&body.refresh_token).await?;
    Ok(axum::Json(pair.into()))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    let claims = &user.0;
    let session = Session {
        user_id: claims.sub,
        session_id: claims.sid,
        jti: &claims.jti,
        expires_at_secs: claims.exp,
    };
    state.app.accounts.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = super::error::ErrorBody)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<UserView>> {
    let record = state.app.accounts.user(user.id()).await?;
    Ok(axum::Json(UserView::from(&record)))
}
