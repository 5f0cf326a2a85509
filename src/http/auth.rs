//! JSON token endpoints under `/auth`: login, refresh, logout, logout-all.
//!
//! Cookie mode for browsers: `POST /auth/login?mode=cookie` answers with the access token
//! and the session's `csrf_token` in the body and the refresh token in the `authd_refresh`
//! cookie (HttpOnly, SameSite=Strict, `Path=/auth`), where scripts cannot read it. Then
//! `/auth/refresh` and `/auth/logout` without a refresh token in the body use the cookie,
//! and only with `X-CSRF-Token` set to that `csrf_token` (else `403`). A cookie-mode refresh
//! answers in the same shape and rotates the cookie; logout deletes it.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{
    device::AuthCookies,
    error::{ApiError, OAuthError, SESSION_REQUIRED},
    extract::{require_bearer, AuthUser},
    json::{body_error, has_content_type, is_json, parse_json, ApiJson},
    token::{login_response, refreshed, token_response},
    ClientInfo,
};
use crate::{
    http::state::AppState,
    service::{AuthService, Credential, LoginSuccess, TokenPair},
};

const X_CSRF_TOKEN: &str = "x-csrf-token";

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
pub(crate) struct LoginBody {
    username: Option<String>,
    password: Option<SecretString>,
}

#[derive(Deserialize)]
pub(crate) struct RefreshBody {
    refresh_token: Option<String>,
}

#[utoipa::path(post, path = "/auth/login", tag = "tokens",
    params(("mode" = Option<String>, Query, description = "`cookie`: the refresh token in an HttpOnly cookie")),
    request_body = crate::http::openapi::Login,
    responses(
        (status = 200, description = "A token pair (cookie mode: `CookieModePair`)", body = crate::http::openapi::TokenPair),
        (status = 400, body = crate::http::openapi::OAuthError),
        (status = 401, description = "Wrong credentials (`invalid_grant`), or `mfa_required`", body = crate::http::openapi::LoginRefused),
        (status = 429, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "login", skip_all)]
pub(crate) async fn login(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    Query(query): Query<HashMap<String, String>>,
    body: Result<ApiJson<LoginBody>, ApiError>,
) -> Result<Response, OAuthError> {
    // An unreadable body answers in the token endpoints' shape too.
    let ApiJson(body) = body?;
    let cookie_mode = cookie_mode(&query)?;
    let username = body
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("username"))?;
    let password = body.password.ok_or_else(|| missing("password"))?;
    let success = auth
        .login(&username, password, client, cookies.value.as_deref())
        .await
        .map_err(|e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED))?;
    Ok(logged_in(success, cookie_mode, &cookies))
}

/// `?mode=cookie` (or `token`, the default) of a login.
pub(super) fn cookie_mode(query: &HashMap<String, String>) -> Result<bool, OAuthError> {
    match query.get("mode").map(String::as_str) {
        None | Some("token") => Ok(false),
        Some("cookie") => Ok(true),
        Some(_) => Err(OAuthError::InvalidRequest(
            "mode must be \"cookie\" or \"token\"".into(),
        )),
    }
}

/// The answer to a completed login, in token or cookie mode, with the device cookie.
pub(super) fn logged_in(
    success: LoginSuccess,
    cookie_mode: bool,
    cookies: &AuthCookies,
) -> Response {
    if !cookie_mode {
        return login_response(success, cookies);
    }
    let mut response = cookie_response(success.pair, cookies);
    cookies.set(&mut response, success.device_cookie);
    response
}

/// A cookie-mode answer: everything but the refresh token in the body (with the session's
/// CSRF token), the refresh token in its cookie; never cached.
#[derive(Serialize)]
struct CookieModeResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_expires_in: i64,
    csrf_token: String,
}

fn cookie_response(pair: TokenPair, cookies: &AuthCookies) -> Response {
    let mut response = ApiJson(CookieModeResponse {
        access_token: pair.access_token,
        token_type: "bearer",
        expires_in: pair.expires_in,
        refresh_expires_in: pair.refresh_expires_in,
        csrf_token: pair.csrf_token,
    })
    .into_response();
    super::error::no_store(&mut response);
    cookies.set_refresh(
        &mut response,
        Some((pair.refresh_token, pair.refresh_expires_in)),
    );
    response
}

/// The refresh token of a request: from a JSON body, or else from the cookie, with the
/// `X-CSRF-Token` header (empty when absent, which no session's token matches).
enum Presented {
    Body(String),
    Cookie { token: String, csrf: String },
}

fn presented_refresh(
    headers: &HeaderMap,
    cookies: &AuthCookies,
    body: &Bytes,
) -> Result<Option<Presented>, ApiError> {
    if !body.is_empty() {
        if !has_content_type(headers, is_json) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json",
            ));
        }
        if let Some(token) = parse_json::<RefreshBody>(body)?.refresh_token {
            return Ok(Some(Presented::Body(token)));
        }
    }
    Ok(cookies.refresh.clone().map(|token| Presented::Cookie {
        token,
        csrf: headers
            .get(X_CSRF_TOKEN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }))
}

#[utoipa::path(post, path = "/auth/refresh", tag = "tokens",
    request_body(content = crate::http::openapi::RefreshTokenBody, description = "Or no body, with the `authd_refresh` cookie and `X-CSRF-Token`"),
    responses(
        (status = 200, description = "A new pair (cookie mode: `CookieModePair`)", body = crate::http::openapi::TokenPair),
        (status = 400, body = crate::http::openapi::OAuthError), (status = 401, description = "`invalid_grant`", body = crate::http::openapi::OAuthError),
        (status = 403, description = "A cookie without its CSRF token", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "refresh", skip_all)]
pub(crate) async fn refresh(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = body.map_err(|r| body_error(&r))?;
    match presented_refresh(&headers, &cookies, &body)? {
        Some(Presented::Body(token)) => {
            let pair = refreshed(&auth, &token, &client, None, StatusCode::UNAUTHORIZED).await?;
            Ok(token_response(pair))
        }
        Some(Presented::Cookie { token, csrf }) => {
            let pair = refreshed(
                &auth,
                &token,
                &client,
                Some(&csrf),
                StatusCode::UNAUTHORIZED,
            )
            .await?;
            Ok(cookie_response(pair, &cookies))
        }
        None => Err(missing("refresh_token")),
    }
}

/// Ends the session named by a refresh token in a JSON body, or else by the Bearer access token.
#[utoipa::path(post, path = "/auth/logout", tag = "tokens", security(("bearer" = []), ("oauth2_password" = [])),
    request_body(content = crate::http::openapi::RefreshTokenBody, description = "Or the `authd_refresh` cookie with `X-CSRF-Token`, or no body and a Bearer access token"),
    responses(
        (status = 204, description = "That session ended"),
        (status = 401, body = crate::http::openapi::OAuthError), (status = 403, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "logout", skip_all)]
pub(crate) async fn logout(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = body.map_err(|r| body_error(&r))?;
    let refused = |e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED);
    match presented_refresh(&headers, &cookies, &body)? {
        Some(Presented::Body(token)) => {
            auth.logout_with_refresh(&token, &client, None)
                .await
                .map_err(refused)?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Some(Presented::Cookie { token, csrf }) => {
            auth.logout_with_refresh(&token, &client, Some(&csrf))
                .await
                .map_err(refused)?;
            let mut response = StatusCode::NO_CONTENT.into_response();
            cookies.set_refresh(&mut response, None);
            return Ok(response);
        }
        None => {}
    }
    let token = require_bearer(&headers)?;
    let found = auth.authenticate(token).await.map_err(ApiError::from)?;
    let Credential::Session(session_id) = found.credential else {
        return Err(ApiError::Forbidden(SESSION_REQUIRED).into());
    };
    auth.end_session(found.user.id, session_id, &client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/auth/logout-all", tag = "tokens", security(("bearer" = []), ("oauth2_password" = [])),
    responses(
        (status = 204, description = "Every session of the user ended"),
        (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "logout_all", skip_all)]
pub(crate) async fn logout_all(
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
