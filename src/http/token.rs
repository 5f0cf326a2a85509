//! `POST /token`: the OAuth 2.0 token endpoint (RFC 6749 §4.3 password grant, §6 refresh).

use std::collections::HashMap;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use secrecy::SecretString;

use super::{
    json::{has_content_type, read_body, ApiJson},
    ClientInfo,
};
use crate::{
    error::{no_store, ApiError, OAuthError},
    service::{AuthError, AuthService, TokenPair},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/token", post(token))
}

#[tracing::instrument(name = "token", skip_all)]
async fn token(
    State(auth): State<AuthService>,
    client: ClientInfo,
    req: Request,
) -> Result<Response, OAuthError> {
    if !has_content_type(req.headers(), |ct| {
        ct == "application/x-www-form-urlencoded"
    }) {
        return Err(OAuthError::InvalidRequest(
            "the token endpoint takes Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    let body = read_body(req, &()).await?;
    let mut params = form_params(&body)?;
    let grant_type = params
        .remove("grant_type")
        .unwrap_or_else(|| "password".to_owned());
    let pair = match grant_type.as_str() {
        "password" => {
            let username = required(&mut params, "username")?;
            let password = SecretString::from(required(&mut params, "password")?);
            auth.login(&username, password, client)
                .await
                .map_err(|e| grant_error(e, StatusCode::UNAUTHORIZED))?
        }
        "refresh_token" => {
            let refresh_token = required(&mut params, "refresh_token")?;
            // RFC 6749 §5.2: a bad refresh token at the token endpoint is a 400 invalid_grant.
            auth.refresh(&refresh_token)
                .await
                .map_err(|e| grant_error(e, StatusCode::BAD_REQUEST))?
        }
        other => {
            return Err(OAuthError::UnsupportedGrantType(
                other.chars().take(64).collect(),
            ))
        }
    };
    Ok(token_response(pair))
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

fn required(params: &mut HashMap<String, String>, name: &str) -> Result<String, OAuthError> {
    params
        .remove(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("missing parameter {name:?}")))
}

/// Maps a failed grant to `invalid_grant` with the endpoint's status for it.
pub(super) fn grant_error(e: AuthError, status: StatusCode) -> OAuthError {
    let description = match e {
        AuthError::InvalidCredentials => "incorrect username or password",
        AuthError::InvalidRefreshToken => "the refresh token is invalid, expired or revoked",
        AuthError::Throttled { retry_after_secs } => {
            return OAuthError::Api(ApiError::TooManyRequests { retry_after_secs })
        }
        AuthError::Api(api) => return OAuthError::Api(api),
    };
    OAuthError::InvalidGrant {
        status,
        description,
    }
}

/// `200` with the pair, never cached.
pub(super) fn token_response(pair: TokenPair) -> Response {
    let mut response = ApiJson(pair).into_response();
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
