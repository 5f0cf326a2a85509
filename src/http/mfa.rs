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
use crate::{http::state::AppState, service::AuthService};

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
pub(crate) struct CodeBody {
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
pub(crate) struct CompleteBody {
    mfa_token: Option<String>,
    code: Option<String>,
}

#[utoipa::path(post, path = "/auth/mfa", tag = "mfa",
    params(("mode" = Option<String>, Query, description = "`cookie`, as at login")),
    request_body = crate::http::openapi::MfaStep,
    responses(
        (status = 200, description = "A token pair", body = crate::http::openapi::TokenPair),
        (status = 400, body = crate::http::openapi::OAuthError),
        (status = 401, description = "`invalid_grant`: a bad or used `mfa_token`, or a wrong code", body = crate::http::openapi::OAuthError),
        (status = 429, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "mfa", skip_all)]
pub(crate) async fn complete(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    Query(query): Query<HashMap<String, String>>,
    body: Result<ApiJson<CompleteBody>, ApiError>,
) -> Result<Response, OAuthError> {
    // An unreadable body answers in the token endpoints' shape too.
    let ApiJson(body) = body?;
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EnrolmentResponse {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
}

#[utoipa::path(post, path = "/users/me/mfa/totp", tag = "mfa", security(("bearer" = []), ("oauth2_password" = [])),
    responses(
        (status = 200, description = "Not active until confirmed", body = EnrolmentResponse),
        (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error),
        (status = 409, description = "`mfa_already_enabled`", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "mfa_enrol", skip_all)]
pub(crate) async fn enrol(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<Response, ApiError> {
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RecoveryCodesResponse {
    recovery_codes: Vec<String>,
}

#[utoipa::path(post, path = "/users/me/mfa/totp/confirm", tag = "mfa", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::Code,
    responses(
        (status = 200, description = "TOTP on; the recovery codes, shown only now", body = RecoveryCodesResponse),
        (status = 401, description = "`invalid_code`", body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error),
        (status = 404, description = "No enrolment pending", body = crate::http::openapi::Error),
        (status = 409, body = crate::http::openapi::Error), (status = 422, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "mfa_confirm", skip_all)]
pub(crate) async fn confirm(
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

#[utoipa::path(delete, path = "/users/me/mfa/totp", tag = "mfa", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::Code,
    responses(
        (status = 204, description = "TOTP off"),
        (status = 401, description = "`invalid_code`", body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error),
        (status = 404, description = "TOTP is not on", body = crate::http::openapi::Error), (status = 429, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "mfa_disable", skip_all)]
pub(crate) async fn disable(
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatusResponse {
    totp_enabled: bool,
    recovery_codes_left: i64,
}

#[utoipa::path(get, path = "/users/me/mfa", tag = "mfa", security(("bearer" = []), ("api_key" = []), ("oauth2_password" = [])),
    responses((status = 200, body = StatusResponse), (status = 401, body = crate::http::openapi::Error)))]
#[tracing::instrument(name = "mfa_status", skip_all)]
pub(crate) async fn status(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<ApiJson<StatusResponse>, ApiError> {
    let (totp_enabled, recovery_codes_left) = auth.totp_status(user.user.id).await?;
    Ok(ApiJson(StatusResponse {
        totp_enabled,
        recovery_codes_left,
    }))
}
