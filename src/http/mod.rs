//! The HTTP layer: one module per resource, each with its `router()`, merged here with the
//! middleware every request goes through.

mod api_keys;
mod auth;
pub mod clients;
mod device;
mod email;
pub mod error;
mod events;
pub mod extract;
mod health;
pub mod json;
mod layers;
pub mod metrics;
mod mfa;
pub mod openapi;
mod sessions;
pub mod state;
mod token;
mod users;
mod wellknown;

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{FromRef, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, Method},
    middleware,
    response::Response,
    Router,
};
use tower::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{http::state::AppState, service::ClientInfo};
use clients::Clients;
use error::ApiError;
use layers::REQUEST_ID;

/// Longest `User-Agent` kept with a session.
const MAX_USER_AGENT: usize = 256;

/// Limits that the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request not answered within this gets `503` (`Retry-After`).
    pub request_timeout: Duration,
    pub cors_origins: Vec<HeaderValue>,
}

/// Every route, with the per-IP rate limit on the credential endpoints, inside [`layers`].
pub fn router(
    state: AppState,
    limits: &HttpLimits,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
       + Clone
       + Send
       + Sync
       + 'static {
    let routes = routes(state.clients.clone(), &state.public_url.0).with_state(state);
    layers::around(routes, limits.request_timeout, cors(&limits.cors_origins))
}

/// The routes, before the state and the layers around them; `clients` keeps the per-IP
/// rate limit of the credential endpoints, `public_url` is where the API docs say authd is.
pub fn routes(clients: Clients, public_url: &str) -> Router<AppState> {
    let credential_endpoints = Router::new()
        .merge(users::register_router())
        .merge(token::router())
        .merge(auth::credential_router())
        .merge(mfa::credential_router())
        .merge(email::credential_router())
        .route_layer(middleware::from_fn_with_state(clients, clients::rate_limit));
    Router::new()
        .merge(credential_endpoints)
        .merge(users::router())
        .merge(api_keys::router())
        .merge(mfa::router())
        .merge(sessions::router())
        .merge(events::router())
        .merge(email::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(wellknown::router())
        .merge(metrics::router())
        .merge(openapi::router(public_url))
        .route_layer(metrics::TrackLayer)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

/// CORS for the configured origins only; `None` (no CORS headers at all) when none are.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                REQUEST_ID,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("x-csrf-token"),
            ])
            .expose_headers([REQUEST_ID, header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(Duration::from_secs(600)),
    )
}

impl<S> FromRequestParts<S> for ClientInfo
where
    S: Send + Sync,
    Clients: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = clients::peer_ip(&parts.extensions);
        let ip = Clients::from_ref(state).client_ip(peer, &parts.headers);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Ok(ClientInfo {
            ip: Some(ip.to_string()),
            user_agent,
        })
    }
}
