//! The `/.well-known/` documents: the JWK set that verifies access tokens, and the
//! discovery document (OpenID Connect Discovery 1.0 / RFC 8414) that names it.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use crate::{
    http::state::{AppState, PublicUrl},
    service::AuthService,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(configuration))
}

/// Short enough for verifiers to notice a key rotation within a minute.
fn cached_a_minute(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "The JWK set that verifies access tokens (empty for HS256)", content_type = "application/json")))]
pub(crate) async fn jwks(State(auth): State<AuthService>) -> Response {
    cached_a_minute(Json(auth.keys().jwks().clone()).into_response())
}

/// What a client or resource server needs to find authd's endpoints and check its tokens:
/// the `iss` of every access token, where to get tokens, and the keys and algorithm they
/// are signed with. authd has no authorization endpoint and no ID tokens: its grants are
/// the password and refresh-token grants at the token endpoint.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "operations",
    responses((status = 200, description = "Discovery: issuer, token endpoint, JWK set, grant types, algorithms", content_type = "application/json")))]
pub(crate) async fn configuration(
    State(auth): State<AuthService>,
    State(PublicUrl(base)): State<PublicUrl>,
) -> Response {
    let keys = auth.keys();
    let algorithm = keys.algorithm();
    cached_a_minute(
        Json(json!({
            "issuer": keys.issuer(),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [algorithm],
            "token_endpoint_auth_signing_alg_values_supported": [algorithm],
            "scopes_supported": [],
            "service_documentation": format!("{base}/docs"),
        }))
        .into_response(),
    )
}
