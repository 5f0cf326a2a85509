//! The error types handlers return, and how each maps to a status, a stable code and a
//! message; also how the service's [`service::Error`] becomes one of them.
//!
//! Everywhere but the token endpoints the body is `{"error": code, "detail": message}`
//! ([`ApiError`]); `/token` and the `/auth/*` token endpoints answer in the RFC 6749 §5.2 shape,
//! which adds `error_description` ([`OAuthError`]).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::json;

use crate::service::{self, TokenRefusal};

/// One refused field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a protected endpoint refused the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header at all.
    Missing,
    /// A token was sent but is malformed, forged, expired or revoked.
    InvalidToken(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("username taken")]
    UsernameTaken,
    #[error("e-mail address taken")]
    EmailTaken,
    #[error("unauthorized")]
    Unauthorized(AuthFailure),
    #[error("not found")]
    NotFound,
    /// A valid credential that may not do this.
    #[error("forbidden")]
    Forbidden(&'static str),
    /// The account's password, asked again to confirm a change, was wrong.
    #[error("wrong password")]
    WrongPassword,
    /// A wrong TOTP or recovery code, where the account is managed.
    #[error("wrong code")]
    WrongCode,
    #[error("second factor already enabled")]
    MfaAlreadyEnabled,
    /// No SMTP server is configured.
    #[error("e-mail unavailable")]
    EmailUnavailable,
    /// A reset or verification token that is unknown, used, expired or void.
    #[error("invalid token")]
    InvalidEmailToken,
    #[error("no e-mail address")]
    NoEmail,
    #[error("already verified")]
    AlreadyVerified,
    /// A right password, on an account whose address is not verified.
    #[error("e-mail not verified")]
    EmailNotVerified,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The database is unavailable (the cause is logged), or the request timed out.
    #[error("service unavailable")]
    Unavailable(Option<anyhow::Error>),
    /// A rate limit or an account throttle; retry after that many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// Password hashing is at capacity.
    #[error("overloaded")]
    Overloaded,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::UsernameTaken => (StatusCode::CONFLICT, "username_taken"),
            ApiError::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            ApiError::Unauthorized(AuthFailure::Missing) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            ApiError::Unauthorized(AuthFailure::InvalidToken(_)) => {
                (StatusCode::UNAUTHORIZED, "invalid_token")
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::WrongPassword => (StatusCode::UNAUTHORIZED, "invalid_password"),
            ApiError::WrongCode => (StatusCode::UNAUTHORIZED, "invalid_code"),
            ApiError::MfaAlreadyEnabled => (StatusCode::CONFLICT, "mfa_already_enabled"),
            ApiError::EmailUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "email_unavailable"),
            ApiError::InvalidEmailToken => (StatusCode::BAD_REQUEST, "invalid_token"),
            ApiError::NoEmail => (StatusCode::UNPROCESSABLE_ENTITY, "no_email"),
            ApiError::AlreadyVerified => (StatusCode::CONFLICT, "already_verified"),
            ApiError::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(fields) if fields.len() == 1 => {
                format!("{} {}", fields[0].field, fields[0].message)
            }
            ApiError::Validation(_) => "the request has invalid fields".into(),
            ApiError::MalformedBody(detail) => detail.clone(),
            ApiError::UnsupportedMediaType(detail) => (*detail).into(),
            ApiError::PayloadTooLarge => "the request body is too large".into(),
            ApiError::UriTooLong => "the request URI is too long".into(),
            ApiError::HeadersTooLarge => "the request headers are too large".into(),
            ApiError::UsernameTaken => "that username is already taken".into(),
            ApiError::EmailTaken => "that e-mail address is already registered".into(),
            ApiError::Unauthorized(AuthFailure::Missing) => "authentication required".into(),
            ApiError::Unauthorized(AuthFailure::InvalidToken(why)) => (*why).into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::Forbidden(why) => (*why).into(),
            ApiError::WrongPassword => "the password is incorrect".into(),
            ApiError::WrongCode => "the code is wrong, or was used already".into(),
            ApiError::MfaAlreadyEnabled => {
                "TOTP is already on for this account; turn it off first to enrol again".into()
            }
            ApiError::EmailUnavailable => {
                "e-mail is not configured on this server (AUTHD_SMTP_URL)".into()
            }
            ApiError::InvalidEmailToken => "the token is invalid, expired or already used".into(),
            ApiError::NoEmail => "the account has no e-mail address; add one first".into(),
            ApiError::AlreadyVerified => "the e-mail address is already verified".into(),
            ApiError::EmailNotVerified => {
                "the password is right, but the account's e-mail address is not verified yet".into()
            }
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
            ApiError::Unavailable(_) => {
                "the service is temporarily unavailable; retry shortly".into()
            }
            ApiError::Overloaded => "too many logins in progress; retry shortly".into(),
            ApiError::TooManyRequests { retry_after_secs } => {
                format!("too many attempts; retry in {retry_after_secs} s")
            }
            ApiError::Internal(_) => "internal server error".into(),
        }
    }

    /// The `Retry-After` of a `429` or `503`, in seconds.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests { retry_after_secs } => Some((*retry_after_secs).max(1)),
            ApiError::Unavailable(_) => Some(5),
            ApiError::Overloaded => Some(1),
            _ => None,
        }
    }

    /// Logs what the client must not see. Runs inside the request's span, so the line carries
    /// the request id.
    fn log(&self) {
        match self {
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            ApiError::Unavailable(Some(e)) => {
                tracing::warn!(error = format!("{e:#}"), "database unavailable")
            }
            _ => {}
        }
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        match e {
            E::InvalidCredentials => {
                ApiError::Unauthorized(AuthFailure::InvalidToken("incorrect username or password"))
            }
            E::AccessTokenRefused(refusal) => {
                ApiError::Unauthorized(AuthFailure::InvalidToken(match refusal {
                    TokenRefusal::Expired => "the access token has expired",
                    TokenRefusal::Invalid => "the access token is invalid",
                    TokenRefusal::SessionEnded => "the session has ended",
                }))
            }
            E::RefreshTokenRefused => {
                ApiError::Unauthorized(AuthFailure::InvalidToken(REFRESH_REFUSED))
            }
            E::Throttled { retry_after_secs } => ApiError::TooManyRequests { retry_after_secs },
            E::WeakPassword(why) => {
                ApiError::Validation(vec![FieldError::new("password", why.to_string())])
            }
            E::UsernameTaken => ApiError::UsernameTaken,
            E::EmailTaken => ApiError::EmailTaken,
            E::NotFound => ApiError::NotFound,
            E::SessionRequired => ApiError::Forbidden(SESSION_REQUIRED),
            E::CsrfRefused => ApiError::Forbidden(
                "a refresh token from a cookie needs the session's X-CSRF-Token header",
            ),
            E::WrongCode => ApiError::WrongCode,
            E::MfaAlreadyEnabled => ApiError::MfaAlreadyEnabled,
            E::EmailUnavailable => ApiError::EmailUnavailable,
            E::InvalidEmailToken => ApiError::InvalidEmailToken,
            E::NoEmail => ApiError::NoEmail,
            E::AlreadyVerified => ApiError::AlreadyVerified,
            E::EmailNotVerified => ApiError::EmailNotVerified,
            // Outside the token endpoints (which answer these themselves, see `OAuthError`).
            E::MfaRequired { .. } | E::MfaRefused => {
                ApiError::Unauthorized(AuthFailure::InvalidToken(MFA_REFUSED))
            }
            E::Overloaded => ApiError::Overloaded,
            E::Unavailable(cause) => ApiError::Unavailable(Some(cause.into())),
            E::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl ApiError {
    /// A service error of a request that sends its new password in `field`: a refusal by the
    /// password policy names that field, as the request does.
    pub fn with_password_field(e: service::Error, field: &'static str) -> Self {
        match e {
            service::Error::WeakPassword(why) => {
                ApiError::Validation(vec![FieldError::new(field, why.to_string())])
            }
            other => other.into(),
        }
    }
}

/// Why an API key is refused where credentials are managed.
pub const SESSION_REQUIRED: &str =
    "this needs a session's access token: an API key cannot manage credentials";

/// The words for a refused second step of a login, whatever the reason.
const MFA_REFUSED: &str = "the mfa_token is invalid or expired, or the code is wrong";

/// The words for a refused refresh token, whatever the reason: the client learns no more.
const REFRESH_REFUSED: &str = "the refresh token is invalid, expired or revoked";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.answer(false)
    }
}

impl ApiError {
    /// The answer; at a token endpoint (`oauth`), a client error also carries RFC 6749's
    /// `error_description`.
    fn answer(self, oauth: bool) -> Response {
        self.log();
        let (status, code) = self.status_and_code();
        let mut body = json!({ "error": code, "detail": self.detail() });
        if let ApiError::Validation(fields) = &self {
            body["fields"] = json!(fields);
        }
        // A 429 also comes from the per-IP limit in front of the token endpoints.
        let throttled = matches!(self, ApiError::TooManyRequests { .. });
        if (oauth || throttled) && status.is_client_error() {
            body["error_description"] = body["detail"].clone();
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(AuthFailure::Missing)
            | ApiError::WrongPassword
            | ApiError::WrongCode => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="authd""#),
                );
            }
            ApiError::Unauthorized(AuthFailure::InvalidToken(why)) => {
                let challenge = format!(
                    r#"Bearer realm="authd", error="invalid_token", error_description="{why}""#
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Errors of the token endpoints, in the RFC 6749 §5.2 shape.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Bad credentials, or an unknown, expired, revoked or reused refresh token.
    #[error("invalid_grant: {description}")]
    InvalidGrant {
        status: StatusCode,
        description: &'static str,
    },
    #[error("unsupported_grant_type")]
    UnsupportedGrantType(String),
    /// The password was right; the login goes on at `/auth/mfa` with this token.
    #[error("mfa_required")]
    MfaRequired(String),
    /// Anything that is not the client's fault (503, 500) keeps its own status.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl OAuthError {
    /// A refused grant: `invalid_grant` with the endpoint's `status` for it (RFC 6749 §5.2:
    /// `400` at `/token`; the JSON endpoints answer `401`).
    pub fn invalid_grant(status: StatusCode, description: &'static str) -> Self {
        OAuthError::InvalidGrant {
            status,
            description,
        }
    }

    /// A service error at a token endpoint: refused credentials or refresh tokens are
    /// `invalid_grant` with `status`; anything else keeps its own answer.
    pub fn from_service(e: service::Error, status: StatusCode) -> Self {
        match e {
            service::Error::InvalidCredentials => {
                Self::invalid_grant(status, "incorrect username or password")
            }
            service::Error::RefreshTokenRefused => Self::invalid_grant(status, REFRESH_REFUSED),
            service::Error::MfaRefused => Self::invalid_grant(status, MFA_REFUSED),
            service::Error::MfaRequired { mfa_token } => OAuthError::MfaRequired(mfa_token),
            other => OAuthError::Api(other.into()),
        }
    }

    /// The answer to a refresh that produced no tokens.
    pub fn refresh_refused(status: StatusCode) -> Self {
        Self::invalid_grant(status, REFRESH_REFUSED)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code, description) = match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            OAuthError::InvalidGrant {
                status,
                description,
            } => (status, "invalid_grant", description.to_owned()),
            OAuthError::UnsupportedGrantType(grant) => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {grant:?} is not supported; use password or refresh_token"),
            ),
            OAuthError::Api(e) => {
                let mut response = e.answer(true);
                no_store(&mut response);
                return response;
            }
            OAuthError::MfaRequired(mfa_token) => {
                let detail = "the password is right; send a code from the authenticator app \
                              (or a recovery code) with this mfa_token to POST /auth/mfa";
                let body = json!({
                    "error": "mfa_required",
                    "error_description": detail,
                    "detail": detail,
                    "mfa_token": mfa_token,
                });
                let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="authd""#),
                );
                no_store(&mut response);
                return response;
            }
        };
        let body =
            json!({ "error": code, "error_description": description, "detail": description });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="authd""#),
            );
        }
        no_store(&mut response);
        response
    }
}

/// RFC 6749 §5.1: token responses must not be cached.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
