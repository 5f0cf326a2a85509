//! `/.well-known/jwks.json`: the public keys that verify access tokens.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};

use crate::{service::AuthService, state::AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(auth): State<AuthService>) -> Response {
    let mut response = Json(auth.keys().jwks().clone()).into_response();
    // Short enough for verifiers to notice a key rotation within a minute.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
