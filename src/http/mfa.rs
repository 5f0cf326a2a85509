//! The TOTP second factor: enrolment and its confirmation, turning it off, its state, and
//! the second step of a login (`POST /auth/mfa`).
//!
//! Enrolling, confirming and disabling manage a credential: they need a session's access
//! token (an API key gets `403`). Answers that carry a secret or recovery codes are never
//! cached.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::{Deserialize, Serialize};

use super::{
    auth::{cookie_mode, logged_in},
    device::AuthCookies,
    error::{no_store, ApiError, FieldError, OAuthError},
    extract::AuthUser,
    json::ApiJson,
    ClientInfo,
};
use crate::{service::AuthService, state::AppState};

/// `POST /auth/mfa`: rate-limited with the other credential endpoints.
pub fn credential_router() -> Router<AppState> {
    Router::new().route("/auth/mfa", post(complete))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me/mfa", get(status))
        .route("/users/me/mfa/totp", post(enrol).delete(disable))
        .route("/users/me/mfa/totp/confirm", post(confirm))
}

#[derive(Deserialize)]
struct CodeBody {
    code: Option<String>,
}

impl CodeBody {
    fn code(self) -> Result<String, ApiError> {
        self.code
            .filter(|code| !code.trim().is_empty())
            .ok_or_else(|| ApiError::Validation(vec![FieldError::new("code", "is required")]))
    }
}

#[derive(Deserialize)]
struct CompleteBody {
    mfa_token: Option<String>,
    code: Option<String>,
}

#[tracing::instrument(name = "mfa", skip_all)]
async fn complete(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    Query(query): Query<HashMap<String, String>>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Response, OAuthError> {
    let cookie_mode = cookie_mode(&query)?;
    let missing = |field: &str| OAuthError::InvalidRequest(format!("missing field {field:?}"));
    let mfa_token = body
        .mfa_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("mfa_token"))?;
    let code = body
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| missing("code"))?;
    let success = auth
        .complete_mfa(&mfa_token, &code, client)
        .await
        .map_err(|e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED))?;
    Ok(logged_in(success, cookie_mode, &cookies))
}

#[derive(Serialize)]
struct EnrolmentResponse {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
}

#[tracing::instrument(name = "mfa_enrol", skip_all)]
async fn enrol(State(auth): State<AuthService>, user: AuthUser) -> Result<Response, ApiError> {
    user.session()?;
    let enrolment = auth.enrol_totp(&user.user).await?;
    let mut response = ApiJson(EnrolmentResponse {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
        qr_svg: enrolment.qr_svg,
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

#[derive(Serialize)]
struct RecoveryCodesResponse {
    recovery_codes: Vec<String>,
}

#[tracing::instrument(name = "mfa_confirm", skip_all)]
async fn confirm(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    user.session()?;
    let code = body.code()?;
    if crate::auth::totp::totp_code(&code).is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "must be the 6 digits the authenticator app shows",
        )]));
    }
    let codes = auth.confirm_totp(&user.user, &code, &client).await?;
    let mut response = ApiJson(RecoveryCodesResponse {
        recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

#[tracing::instrument(name = "mfa_disable", skip_all)]
async fn disable(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    let code = body.code()?;
    auth.disable_totp(&user.user, &code, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct StatusResponse {
    totp_enabled: bool,
    recovery_codes_left: i64,
}

#[tracing::instrument(name = "mfa_status", skip_all)]
async fn status(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<ApiJson<StatusResponse>, ApiError> {
    let (totp_enabled, recovery_codes_left) = auth.totp_status(user.user.id).await?;
    Ok(ApiJson(StatusResponse {
        totp_enabled,
        recovery_codes_left,
    }))
}
