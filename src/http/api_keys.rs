//! `/users/me/api-keys`: create, list and revoke one's API keys. Managing keys takes a
//! session's access token; an API key gets `403` here.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
    Router,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    error::{ApiError, FieldError},
    extract::AuthUser,
    json::ApiJson,
    ClientInfo,
};
use crate::{
    domain::{rfc3339, ApiKeyInfo},
    http::state::AppState,
    service::AuthService,
};

/// Longest key name, in characters.
const MAX_NAME: usize = 64;
/// Longest lifetime a key may be given, in days (ten years).
const MAX_DAYS: u32 = 3650;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me/api-keys", get(list).post(create))
        .route("/users/me/api-keys/{id}", delete(revoke))
}

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    name: Option<String>,
    expires_in_days: Option<serde_json::Value>,
}

/// A key as lists show it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct KeyView {
    id: Uuid,
    name: String,
    prefix: String,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
}

/// A new key: the view, and the key itself, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedView {
    id: Uuid,
    name: String,
    key: String,
    prefix: String,
    created_at: String,
    expires_at: Option<String>,
}

impl From<ApiKeyInfo> for KeyView {
    fn from(k: ApiKeyInfo) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            expires_at: k.expires_at.map(rfc3339),
        }
    }
}

#[utoipa::path(post, path = "/users/me/api-keys", tag = "api-keys", security(("bearer" = []), ("oauth2_password" = [])),
    request_body = crate::http::openapi::NewApiKey,
    responses(
        (status = 201, description = "The key, shown only here", body = CreatedView),
        (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error), (status = 422, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "create_api_key", skip_all)]
pub(crate) async fn create(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, ApiJson<CreatedView>), ApiError> {
    user.session()?;
    let (name, days) = parse_create(body)?;
    let created = auth
        .create_api_key(user.user.id, &name, days, &client)
        .await?;
    let info = created.info;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedView {
            id: info.id,
            name: info.name,
            key: created.key.expose().to_owned(),
            prefix: info.prefix,
            created_at: rfc3339(info.created_at),
            expires_at: info.expires_at.map(rfc3339),
        }),
    ))
}

fn parse_create(body: CreateBody) -> Result<(String, Option<u32>), ApiError> {
    let mut errors = Vec::new();
    let name = body.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::new("name", "is required"));
    } else if name.chars().count() > MAX_NAME {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME} characters"),
        ));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    }
    let days = match body.expires_in_days {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(d) if (1..=u64::from(MAX_DAYS)).contains(&d) => Some(d as u32),
            _ => {
                errors.push(FieldError::new(
                    "expires_in_days",
                    format!("must be a whole number of days from 1 to {MAX_DAYS}"),
                ));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok((name.to_owned(), days))
    } else {
        Err(ApiError::Validation(errors))
    }
}

#[utoipa::path(get, path = "/users/me/api-keys", tag = "api-keys", security(("bearer" = []), ("oauth2_password" = [])),
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error)))]
#[tracing::instrument(name = "list_api_keys", skip_all)]
pub(crate) async fn list(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<ApiJson<Vec<KeyView>>, ApiError> {
    user.session()?;
    let keys = auth.api_keys(user.user.id).await?;
    Ok(ApiJson(keys.into_iter().map(KeyView::from).collect()))
}

#[utoipa::path(delete, path = "/users/me/api-keys/{id}", tag = "api-keys", security(("bearer" = []), ("oauth2_password" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "The key stops working at once"),
        (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error), (status = 404, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "revoke_api_key", skip_all)]
pub(crate) async fn revoke(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    // A malformed id names no key: the same 404 as another user's key.
    let id = Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    auth.revoke_api_key(user.user.id, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
