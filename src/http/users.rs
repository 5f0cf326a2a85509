//! `POST /users` (registration) and `GET /users/me`.

use axum::{extract::State, http::StatusCode, routing::get, routing::post, Router};
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    error::{ApiError, FieldError},
    extract::AuthUser,
    json::ApiJson,
};
use crate::{
    domain::{Email, FullName, User, Username},
    service::{AuthService, Registration},
    state::AppState,
};

/// Registration: rate-limited with the other credential endpoints.
pub fn register_router() -> Router<AppState> {
    Router::new().route("/users", post(register))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/users/me", get(me))
}

/// Every field optional here so that all missing and invalid fields are reported together.
#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<SecretString>,
    email: Option<String>,
    full_name: Option<String>,
}

#[tracing::instrument(name = "register", skip_all)]
async fn register(
    State(auth): State<AuthService>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, ApiJson<User>), ApiError> {
    let registration = parse_registration(body)?;
    let user = auth.register(registration).await?;
    Ok((StatusCode::CREATED, ApiJson(user)))
}

fn parse_registration(body: RegisterBody) -> Result<Registration, ApiError> {
    let mut errors = Vec::new();
    if body.username.is_none() {
        errors.push(FieldError::new("username", "is required"));
    }
    if body.password.is_none() {
        errors.push(FieldError::new("password", "is required"));
    }

    let username = body.username.and_then(|u| {
        Username::parse(&u)
            .map_err(|e| errors.push(FieldError::new("username", e)))
            .ok()
    });
    // An empty optional field is the same as an absent one (HTML forms send "").
    let email = non_empty(body.email)
        .map(|e| {
            Email::parse(&e)
                .map_err(|msg| errors.push(FieldError::new("email", msg)))
                .ok()
        })
        .unwrap_or(None);
    let full_name = non_empty(body.full_name)
        .map(|n| {
            FullName::parse(&n)
                .map_err(|msg| errors.push(FieldError::new("full_name", msg)))
                .ok()
        })
        .unwrap_or(None);

    match (username, body.password) {
        (Some(username), Some(password)) if errors.is_empty() => Ok(Registration {
            username,
            email,
            full_name,
            password,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[tracing::instrument(name = "me", skip_all)]
async fn me(user: AuthUser) -> ApiJson<User> {
    ApiJson(user.user)
}
