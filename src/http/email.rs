//! Password reset and address verification: `POST /auth/password-reset` (and `/confirm`),
//! `POST /users/me/email/verify` and `POST /auth/verify-email`. Without `AUTHD_SMTP_URL`
//! each answers `503 email_unavailable`, after the credential check where there is one.

use axum::{extract::State, http::StatusCode, routing::post, Router};
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    error::{ApiError, FieldError},
    extract::AuthUser,
    json::ApiJson,
    ClientInfo,
};
use crate::{domain::Email, http::state::AppState, service::AuthService};

/// The reset endpoints: rate-limited per IP with the other credential endpoints.
pub fn credential_router() -> Router<AppState> {
    Router::new()
        .route("/auth/password-reset", post(request_reset))
        .route("/auth/password-reset/confirm", post(confirm_reset))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me/email/verify", post(resend_verification))
        .route("/auth/verify-email", post(verify))
}

fn required(field: &str, value: Option<String>) -> Result<String, FieldError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| FieldError::new(field, "is required"))
}

#[derive(Deserialize)]
pub(crate) struct ResetBody {
    email: Option<String>,
}

#[utoipa::path(post, path = "/auth/password-reset", tag = "email",
    request_body = crate::http::openapi::PasswordResetRequest,
    responses(
        (status = 202, description = "Accepted, whether or not an account has this address: if one has, a mail with a reset token goes to it (at most 3 an hour)"),
        (status = 422, description = "Not an e-mail address (`validation_failed`)", body = crate::http::openapi::Error),
        (status = 429, description = "Too many attempts from this client", body = crate::http::openapi::Error),
        (status = 503, description = "`email_unavailable`: no SMTP server is configured", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "password_reset", skip_all)]
pub(crate) async fn request_reset(
    State(auth): State<AuthService>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<StatusCode, ApiError> {
    let address = required("email", body.email)
        .and_then(|e| Email::parse(&e).map_err(|msg| FieldError::new("email", msg)))
        .map_err(|e| ApiError::Validation(vec![e]))?;
    auth.request_password_reset(address, client)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub(crate) struct ConfirmBody {
    token: Option<String>,
    new_password: Option<SecretString>,
}

#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "email",
    request_body = crate::http::openapi::PasswordResetConfirm,
    responses(
        (status = 204, description = "The password is set; every session of the account has ended, and every other reset token is void"),
        (status = 400, description = "`invalid_token`: unknown, used, expired or replaced by a newer one", body = crate::http::openapi::Error),
        (status = 422, description = "The new password is refused by the policy (the token stays good)", body = crate::http::openapi::Error),
        (status = 429, description = "Too many attempts from this client", body = crate::http::openapi::Error),
        (status = 503, description = "`email_unavailable`", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "password_reset_confirm", skip_all)]
pub(crate) async fn confirm_reset(
    State(auth): State<AuthService>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<StatusCode, ApiError> {
    let token = required("token", body.token);
    let password = body
        .new_password
        .ok_or_else(|| FieldError::new("new_password", "is required"));
    let (token, password) = match (token, password) {
        (Ok(token), Ok(password)) => (token, password),
        (token, password) => {
            return Err(ApiError::Validation(
                [token.err(), password.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ))
        }
    };
    auth.confirm_password_reset(&token, password, &client)
        .await
        .map_err(|e| ApiError::with_password_field(e, "new_password"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/users/me/email/verify", tag = "email", security(("bearer" = []), ("api_key" = []), ("oauth2_password" = [])),
    responses(
        (status = 202, description = "A verification mail goes to the account's address (at most 3 an hour)"),
        (status = 401, body = crate::http::openapi::Error),
        (status = 409, description = "`already_verified`", body = crate::http::openapi::Error),
        (status = 422, description = "`no_email`: the account has no address", body = crate::http::openapi::Error),
        (status = 503, description = "`email_unavailable`", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "resend_verification", skip_all)]
pub(crate) async fn resend_verification(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    auth.resend_verification(&user.user).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub(crate) struct VerifyBody {
    token: Option<String>,
}

#[utoipa::path(post, path = "/auth/verify-email", tag = "email",
    request_body = crate::http::openapi::EmailToken,
    responses(
        (status = 204, description = "`email_verified` is now `true`"),
        (status = 400, description = "`invalid_token`: unknown, used or expired, or the address changed since it was mailed", body = crate::http::openapi::Error),
        (status = 422, description = "No token (`validation_failed`)", body = crate::http::openapi::Error),
        (status = 503, description = "`email_unavailable`", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "verify_email", skip_all)]
pub(crate) async fn verify(
    State(auth): State<AuthService>,
    client: ClientInfo,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<StatusCode, ApiError> {
    let token = required("token", body.token).map_err(|e| ApiError::Validation(vec![e]))?;
    auth.verify_email(&token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
