//! `GET /users/me/events`: the account's audit trail, newest first, a page at a time.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    routing::get,
    Router,
};
use chrono::SecondsFormat;
use serde::Serialize;
use uuid::Uuid;

use super::{
    error::{ApiError, FieldError},
    extract::AuthUser,
    json::ApiJson,
};
use crate::{http::state::AppState, service::AuthService};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/users/me/events", get(list))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EventView {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    at: String,
    ip: Option<String>,
    user_agent: Option<String>,
}

/// `?limit=` (1 to 100, default 50) and `?before=<event id>`: the next page starts below the
/// last id of the previous one.
#[utoipa::path(get, path = "/users/me/events", tag = "sessions", security(("bearer" = []), ("api_key" = []), ("oauth2_password" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 50"),
        ("before" = Option<Uuid>, Query, description = "The last id of the previous page"),
    ),
    responses((status = 200, description = "Newest first", body = Vec<EventView>), (status = 401, body = crate::http::openapi::Error), (status = 422, body = crate::http::openapi::Error)))]
#[tracing::instrument(name = "list_events", skip_all)]
pub(crate) async fn list(
    State(auth): State<AuthService>,
    user: AuthUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<ApiJson<Vec<EventView>>, ApiError> {
    let mut errors = Vec::new();
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    let before = match query.get("before") {
        None => None,
        Some(text) => match Uuid::try_parse(text) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new("before", "must be an event id"));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let events = auth.events(user.user.id, before, limit).await?;
    Ok(ApiJson(
        events
            .into_iter()
            .map(|e| EventView {
                id: e.id,
                kind: e.kind,
                at: e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                ip: e.ip,
                user_agent: e.user_agent,
            })
            .collect(),
    ))
}
