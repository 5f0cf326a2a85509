//! `POST /token`: the OAuth 2.0 token endpoint (RFC 6749 §4.3 password grant, §6 refresh),
//! taking its parameters as a URL-encoded form (RFC 6749) or as `multipart/form-data` (what
//! FastAPI accepts, and the tutorial's Postman walkthrough sends).

use std::collections::HashMap;

use axum::{
    extract::{
        multipart::{Multipart, MultipartError},
        FromRequest, Request, State,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use secrecy::SecretString;
use serde::Serialize;

use super::{
    device::AuthCookies,
    error::{no_store, ApiError, OAuthError},
    json::{has_content_type, read_body, ApiJson},
    ClientInfo,
};
use crate::{
    http::state::AppState,
    service::{AuthService, LoginSuccess, RefreshOutcome, TokenPair},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/token", post(token))
}

#[utoipa::path(post, path = "/token", tag = "tokens",
    request_body(content(
        (crate::http::openapi::TokenForm = "application/x-www-form-urlencoded"),
        (crate::http::openapi::TokenForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "A token pair (and the `authd_device` cookie)", body = crate::http::openapi::TokenPair),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type`, or a refused refresh token (`invalid_grant`)", body = crate::http::openapi::OAuthError),
        (status = 401, description = "Wrong credentials (`invalid_grant`), or `mfa_required`", body = crate::http::openapi::LoginRefused),
        (status = 429, body = crate::http::openapi::Error), (status = 503, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "token", skip_all)]
pub(crate) async fn token(
    State(auth): State<AuthService>,
    client: ClientInfo,
    cookies: AuthCookies,
    req: Request,
) -> Result<Response, OAuthError> {
    let mut params = if has_content_type(req.headers(), |ct| {
        ct == "application/x-www-form-urlencoded"
    }) {
        form_params(&read_body(req, &()).await?)?
    } else if has_content_type(req.headers(), |ct| ct == "multipart/form-data") {
        multipart_params(req).await?
    } else {
        return Err(OAuthError::InvalidRequest(
            "the token endpoint takes Content-Type: application/x-www-form-urlencoded \
             (or multipart/form-data)"
                .into(),
        ));
    };
    let grant_type = params
        .remove("grant_type")
        .unwrap_or_else(|| "password".to_owned());
    match grant_type.as_str() {
        "password" => {
            let username = required(&mut params, "username")?;
            let password = SecretString::from(required(&mut params, "password")?);
            let success = auth
                .login(&username, password, client, cookies.value.as_deref())
                .await
                .map_err(|e| OAuthError::from_service(e, StatusCode::UNAUTHORIZED))?;
            Ok(login_response(success, &cookies))
        }
        "refresh_token" => {
            let refresh_token = required(&mut params, "refresh_token")?;
            // RFC 6749 §5.2: a bad refresh token at the token endpoint is a 400 invalid_grant.
            let pair = refreshed(
                &auth,
                &refresh_token,
                &client,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await?;
            Ok(token_response(pair))
        }
        other => Err(OAuthError::UnsupportedGrantType(
            other.chars().take(64).collect(),
        )),
    }
}

/// A successful login's answer: the token pair, and the device cookie.
pub(super) fn login_response(success: LoginSuccess, cookies: &AuthCookies) -> Response {
    let mut response = token_response(success.pair);
    cookies.set(&mut response, success.device_cookie);
    response
}

/// Decodes a form body; RFC 6749 §3.2 forbids repeating a parameter.
fn form_params(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::InvalidRequest("the request body is not a valid form".into()))?;
    let mut params = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if params.contains_key(&name) {
            return Err(OAuthError::InvalidRequest(format!(
                "parameter {name:?} is repeated"
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

/// Decodes a `multipart/form-data` body, as FastAPI's `OAuth2PasswordRequestForm` accepts
/// it: text fields only, none repeated, under the same body limit as any request.
async fn multipart_params(req: Request) -> Result<HashMap<String, String>, OAuthError> {
    let malformed = |e: MultipartError| -> OAuthError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge.into()
        } else {
            OAuthError::InvalidRequest("the request body is not a valid multipart form".into())
        }
    };
    let mut form = Multipart::from_request(req, &()).await.map_err(|_| {
        OAuthError::InvalidRequest("the multipart form has no valid boundary".into())
    })?;
    let mut params = HashMap::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(OAuthError::InvalidRequest(
                "a multipart field has no name".into(),
            ));
        };
        if field.file_name().is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "parameter {name:?} must be a text field, not a file"
            )));
        }
        let value = field.text().await.map_err(malformed)?;
        if params.insert(name.clone(), value).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "parameter {name:?} is repeated"
            )));
        }
    }
    Ok(params)
}

fn required(params: &mut HashMap<String, String>, name: &str) -> Result<String, OAuthError> {
    params
        .remove(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("missing parameter {name:?}")))
}

/// Refreshes `presented`: the new pair, or `invalid_grant` with `status`.
pub(super) async fn refreshed(
    auth: &AuthService,
    presented: &str,
    client: &ClientInfo,
    csrf: Option<&str>,
    status: StatusCode,
) -> Result<TokenPair, OAuthError> {
    match auth.refresh(presented, client, csrf).await {
        Ok(RefreshOutcome::Rotated(pair) | RefreshOutcome::Grace(pair)) => Ok(pair),
        Ok(
            RefreshOutcome::Reused
            | RefreshOutcome::Unknown
            | RefreshOutcome::Expired
            | RefreshOutcome::Revoked,
        ) => Err(OAuthError::refresh_refused(status)),
        Err(e) => Err(OAuthError::from_service(e, status)),
    }
}

/// The token response of RFC 6749 §5.1, with authd's `refresh_expires_in`.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    refresh_expires_in: i64,
}

/// `200` with the pair, never cached.
pub(super) fn token_response(pair: TokenPair) -> Response {
    let mut response = ApiJson(TokenResponse {
        access_token: pair.access_token,
        token_type: "bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token,
        refresh_expires_in: pair.refresh_expires_in,
    })
    .into_response();
    no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(form_params(b"username=a&username=b").is_err());
        let p = form_params(b"username=a%20b&password=p%26w").unwrap();
        assert_eq!(p["username"], "a b");
        assert_eq!(p["password"], "p&w");
    }
}
