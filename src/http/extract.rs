//! The `AuthUser` extractor: a request with a valid credential (an access token of a live
//! session, or an API key), and the `Authorization: Bearer` parser behind it.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header::AUTHORIZATION, request::Parts, HeaderMap},
};

use super::error::{ApiError, AuthFailure, SESSION_REQUIRED};
use crate::{
    domain::User,
    service::{AuthService, Credential},
};

/// The authenticated user of a request. A missing credential and a bad one are different
/// errors (plain `401` vs `401 invalid_token`); there is deliberately no `Option<AuthUser>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub credential: Credential,
}

impl AuthUser {
    /// The session of the access token the request came with; `403` for an API key, which
    /// may not manage credentials.
    pub fn session(&self) -> Result<uuid::Uuid, ApiError> {
        match self.credential {
            Credential::Session(id) => Ok(id),
            Credential::ApiKey(_) => Err(ApiError::Forbidden(SESSION_REQUIRED)),
        }
    }
}

/// The header an API key may come in instead of `Authorization: Bearer`.
const X_API_KEY: &str = "x-api-key";

const MALFORMED: &str = "malformed Authorization header";
const MALFORMED_KEY: &str = "malformed X-API-Key header";

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    Missing,
    Malformed,
    Token(&'a str),
}

/// Reads `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
/// Another scheme counts as no credential; a Bearer header without a well-formed token is
/// malformed, and so is a header that is not visible ASCII.
pub fn bearer_token(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Missing;
    }
    // RFC 6750 b64token: a non-empty run of these characters, then '=' padding.
    let token = token.trim();
    let b64token =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    if !token.is_empty() && token.trim_end_matches('=').bytes().all(b64token) {
        Bearer::Token(token)
    } else {
        Bearer::Malformed
    }
}

/// The Bearer token of a request, or the `401` for its absence or malformation.
pub fn require_bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    match bearer_token(headers) {
        Bearer::Missing => Err(ApiError::Unauthorized(AuthFailure::Missing)),
        Bearer::Malformed => Err(ApiError::Unauthorized(AuthFailure::InvalidToken(MALFORMED))),
        Bearer::Token(token) => Ok(token),
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AuthService: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The Authorization header is parsed once; X-API-Key is read only without it.
        let presented = match bearer_token(&parts.headers) {
            Bearer::Token(token) => token,
            Bearer::Malformed => {
                return Err(ApiError::Unauthorized(AuthFailure::InvalidToken(MALFORMED)))
            }
            Bearer::Missing => match parts.headers.get(X_API_KEY) {
                Some(key) => key.to_str().map_err(|_| {
                    ApiError::Unauthorized(AuthFailure::InvalidToken(MALFORMED_KEY))
                })?,
                None => return Err(ApiError::Unauthorized(AuthFailure::Missing)),
            },
        };
        let auth = AuthService::from_ref(state);
        let found = auth.authenticate(presented).await?;
        tracing::Span::current().record("user_id", tracing::field::display(found.user.id));
        Ok(AuthUser {
            user: found.user,
            credential: found.credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Option<&[u8]>) -> Bearer<'static> {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(
                AUTHORIZATION,
                axum::http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        // Leaked in tests only, to return a borrowed token.
        bearer_token(Box::leak(Box::new(headers)))
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(
            parse(Some(b"Bearer abc.def.ghi")),
            Bearer::Token("abc.def.ghi")
        );
        assert_eq!(parse(Some(b"bearer abc")), Bearer::Token("abc"));
        assert_eq!(parse(Some(b"BEARER  abc ")), Bearer::Token("abc"));
    }

    #[test]
    fn other_schemes_are_no_credential() {
        assert_eq!(parse(None), Bearer::Missing);
        assert_eq!(parse(Some(b"Basic dXNlcjpwYXNz")), Bearer::Missing);
        assert_eq!(parse(Some(b"Token abc")), Bearer::Missing);
    }

    #[test]
    fn garbage_bearer_values_are_malformed() {
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer <script>",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(parse(Some(bad)), Bearer::Malformed, "{bad:?}");
        }
    }
}
