//! Liveness and readiness probes.

use std::time::Duration;

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::{http::state::AppState, service::AuthService};

/// A readiness check that takes longer than this counts as the database being down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `200` while the process runs; touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `200` when the database answers, `503` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers"), (status = 503, body = crate::http::openapi::Error)))]
pub(crate) async fn readyz(State(auth): State<AuthService>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, auth.ready()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::Unavailable(Some(e.into()))),
        Err(_) => Err(ApiError::Unavailable(None)),
    }
}
