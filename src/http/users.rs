//! `POST /users` (registration) and `GET /users/me`.

use axum::{extract::State, http::StatusCode, routing::get, routing::post, Router};
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    error::{ApiError, FieldError},
    extract::AuthUser,
    json::ApiJson,
    ClientInfo,
};
use crate::{
    domain::{Email, FullName, User, Username},
    http::state::AppState,
    service::{self, AuthService, ProfileChange, Registration},
};

/// Registration: rate-limited with the other credential endpoints.
pub fn register_router() -> Router<AppState> {
    Router::new().route("/users", post(register))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(me).patch(update_me).delete(delete_me))
        .route("/users/me/password", post(change_password))
}

/// Every field optional here so that all missing and invalid fields are reported together.
#[derive(Deserialize)]
pub(crate) struct RegisterBody {
    username: Option<String>,
    password: Option<SecretString>,
    email: Option<String>,
    full_name: Option<String>,
}

#[utoipa::path(post, path = "/users", tag = "users",
    request_body = crate::http::openapi::Registration,
    responses(
        (status = 201, description = "Registered", body = crate::http::openapi::UserSchema),
        (status = 400, description = "A body that is not JSON (`malformed_body`)", body = crate::http::openapi::Error),
        (status = 415, description = "Not `application/json`", body = crate::http::openapi::Error),
        (status = 409, description = "`username_taken` or `email_taken`", body = crate::http::openapi::Error),
        (status = 422, description = "Invalid fields (`validation_failed`)", body = crate::http::openapi::Error),
        (status = 429, description = "Too many attempts from this client", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "register", skip_all)]
pub(crate) async fn register(
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

#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = []), ("api_key" = []), ("oauth2_password" = [])),
    responses(
        (status = 200, description = "The caller", body = crate::http::openapi::UserSchema),
        (status = 401, description = "No or a bad credential", body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "me", skip_all)]
pub(crate) async fn me(user: AuthUser) -> ApiJson<User> {
    ApiJson(user.user)
}

/// A field of a `PATCH` body: absent (leave it), `null` or empty (clear it), or a value.
#[derive(Default)]
pub(crate) enum Patch {
    #[default]
    Absent,
    Clear,
    Set(String),
}

impl<'de> Deserialize<'de> for Patch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            Some(v) if !v.trim().is_empty() => Patch::Set(v),
            _ => Patch::Clear,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct PatchMeBody {
    #[serde(default)]
    email: Patch,
    #[serde(default)]
    full_name: Patch,
}

/// `PATCH /users/me`: the e-mail address and the full name. The address is how an account
/// is recovered, so changing it takes a session, as other credential changes do.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::ProfilePatch,
    responses(
        (status = 200, description = "The user as it now is", body = crate::http::openapi::UserSchema),
        (status = 401, body = crate::http::openapi::Error), (status = 403, description = "An API key", body = crate::http::openapi::Error),
        (status = 409, description = "`email_taken`", body = crate::http::openapi::Error), (status = 422, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "update_me", skip_all)]
pub(crate) async fn update_me(
    State(auth): State<AuthService>,
    user: AuthUser,
    ApiJson(body): ApiJson<PatchMeBody>,
) -> Result<ApiJson<User>, ApiError> {
    user.session()?;
    let mut errors = Vec::new();
    let mut change = ProfileChange::default();
    match body.email {
        Patch::Absent => {}
        Patch::Clear => change.email = Some(None),
        Patch::Set(e) => match Email::parse(&e) {
            Ok(email) => change.email = Some(Some(email)),
            Err(msg) => errors.push(FieldError::new("email", msg)),
        },
    }
    match body.full_name {
        Patch::Absent => {}
        Patch::Clear => change.full_name = Some(None),
        Patch::Set(n) => match FullName::parse(&n) {
            Ok(name) => change.full_name = Some(Some(name)),
            Err(msg) => errors.push(FieldError::new("full_name", msg)),
        },
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(ApiJson(auth.update_profile(&user.user, change).await?))
}

#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    current_password: Option<SecretString>,
    new_password: Option<SecretString>,
}

/// `POST /users/me/password`: every other session of the user ends; the caller's goes on.
#[utoipa::path(post, path = "/users/me/password", tag = "users", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session ended"),
        (status = 401, description = "`invalid_password`, or a bad credential", body = crate::http::openapi::Error),
        (status = 403, body = crate::http::openapi::Error), (status = 422, body = crate::http::openapi::Error), (status = 429, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "change_password", skip_all)]
pub(crate) async fn change_password(
    State(auth): State<AuthService>,
    user: AuthUser,
    client_info: ClientInfo,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let session = user.session()?;
    let client = client_info;
    let (current, new) = match (body.current_password, body.new_password) {
        (Some(current), Some(new)) => (current, new),
        (current, new) => {
            let missing = [
                ("current_password", current.is_none()),
                ("new_password", new.is_none()),
            ];
            return Err(ApiError::Validation(
                missing
                    .into_iter()
                    .filter(|(_, missing)| *missing)
                    .map(|(field, _)| FieldError::new(field, "is required"))
                    .collect(),
            ));
        }
    };
    auth.change_password(&user.user, session, current, new, &client)
        .await
        .map_err(|e| match e {
            service::Error::InvalidCredentials => ApiError::WrongPassword,
            other => ApiError::with_password_field(other, "new_password"),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DeleteMeBody {
    password: Option<SecretString>,
}

/// `DELETE /users/me`: the account and everything of it, after its password.
#[utoipa::path(delete, path = "/users/me", tag = "users", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::AccountDeletion,
    responses(
        (status = 204, description = "The user and everything of it deleted"),
        (status = 401, description = "`invalid_password`, or a bad credential", body = crate::http::openapi::Error),
        (status = 403, body = crate::http::openapi::Error), (status = 429, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "delete_me", skip_all)]
pub(crate) async fn delete_me(
    State(auth): State<AuthService>,
    user: AuthUser,
    ApiJson(body): ApiJson<DeleteMeBody>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    let password = body
        .password
        .ok_or_else(|| ApiError::Validation(vec![FieldError::new("password", "is required")]))?;
    auth.delete_account(&user.user, password)
        .await
        .map_err(wrong_password)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A wrong confirming password is `401 invalid_password`, not a bad token.
fn wrong_password(e: service::Error) -> ApiError {
    match e {
        service::Error::InvalidCredentials => ApiError::WrongPassword,
        other => other.into(),
    }
}
