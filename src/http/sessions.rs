//! `/users/me/sessions`: one's live sessions, and ending one of them (a lost phone).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
    Router,
};
use serde::Serialize;
use uuid::Uuid;

use super::{error::ApiError, extract::AuthUser, json::ApiJson, ClientInfo};
use crate::{
    domain::rfc3339,
    http::state::AppState,
    service::{AuthService, Credential},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me/sessions", get(list))
        .route("/users/me/sessions/{id}", delete(end))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SessionView {
    id: Uuid,
    created_at: String,
    last_used_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Whether this is the session of the access token that asked.
    current: bool,
}

#[utoipa::path(get, path = "/users/me/sessions", tag = "sessions", security(("bearer" = []), ("api_key" = []), ("oauth2_password" = [])),
    responses((status = 200, description = "Live sessions, newest first", body = Vec<SessionView>), (status = 401, body = crate::http::openapi::Error)))]
#[tracing::instrument(name = "list_sessions", skip_all)]
pub(crate) async fn list(
    State(auth): State<AuthService>,
    user: AuthUser,
) -> Result<ApiJson<Vec<SessionView>>, ApiError> {
    let current = match user.credential {
        Credential::Session(id) => Some(id),
        Credential::ApiKey(_) => None,
    };
    let sessions = auth.sessions(user.user.id).await?;
    Ok(ApiJson(
        sessions
            .into_iter()
            .map(|s| SessionView {
                current: Some(s.id) == current,
                id: s.id,
                created_at: rfc3339(s.created_at),
                last_used_at: rfc3339(s.last_used_at),
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect(),
    ))
}

/// Ends a session: a credential change, so it takes a session's access token.
#[utoipa::path(delete, path = "/users/me/sessions/{id}", tag = "sessions", security(("bearer" = []), ("oauth2_password" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "That session ended"),
        (status = 401, body = crate::http::openapi::Error), (status = 403, body = crate::http::openapi::Error), (status = 404, body = crate::http::openapi::Error),
    ))]
#[tracing::instrument(name = "end_session", skip_all)]
pub(crate) async fn end(
    State(auth): State<AuthService>,
    user: AuthUser,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    let id = Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    auth.end_own_session(user.user.id, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
