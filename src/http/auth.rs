//! JSON token endpoints under `/auth`: login, refresh, logout, logout-all.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
    Router,
};
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    device::DeviceCookie,
    error::{ApiError, OAuthError, SESSION_REQUIRED},
    extract::{require_bearer, AuthUser},
    json::{body_error, has_content_type, is_json, parse_json, ApiJson},
    token::{login_response, refreshed, token_response},
    ClientInfo,
};
use crate::{
    service::{AuthService, Credential},
    state::AppState,
};

/// Login and refresh: rate-limited with the other credential endpoints.
pub fn credential_router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<SecretString>,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[tracing::instrument(name = "login", skip_all)]
async fn login(
    State(auth): State<AuthService>,
    client: ClientInfo,
    device: DeviceCookie,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, OAuthError> {
    let username = body
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("username"))?;
    let password = body.password.ok_or_else(|| missing("password"))?;
    let success = auth
        .login(&username, password, client, device.value.as_deref())
        .await
        .map_err(|e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED))?;
    Ok(login_response(success, &device))
}

#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(
    State(auth): State<AuthService>,
    client: ClientInfo,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, OAuthError> {
    let presented = body.refresh_token.ok_or_else(|| missing("refresh_token"))?;
    let pair = refreshed(&auth, &presented, &client, StatusCode::UNAUTHORIZED).await?;
    Ok(token_response(pair))
}

/// Ends the session named by a refresh token in a JSON body, or else by the Bearer access token.
#[tracing::instrument(name = "logout", skip_all)]
async fn logout(
    State(auth): State<AuthService>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, OAuthError> {
    let body = body.map_err(|r| body_error(&r))?;
    if !body.is_empty() {
        if !has_content_type(&headers, is_json) {
            return Err(
                ApiError::UnsupportedMediaType("expected Content-Type: application/json").into(),
            );
        }
        if let Some(presented) = parse_json::<RefreshBody>(&body)?.refresh_token {
            auth.logout_with_refresh(&presented, &client)
                .await
                .map_err(|e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED))?;
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    let token = require_bearer(&headers)?;
    let found = auth.authenticate(token).await.map_err(ApiError::from)?;
    let Credential::Session(session_id) = found.credential else {
        return Err(ApiError::Forbidden(SESSION_REQUIRED).into());
    };
    auth.end_session(found.user.id, session_id, &client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(name = "logout_all", skip_all)]
async fn logout_all(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    auth.end_all_sessions(user.user.id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn missing(field: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("missing field {field:?}"))
}
