//! The HTTP layer: one module per resource, each with its `router()`, merged here with the
//! middleware every request goes through.

mod auth;
pub mod clients;
mod envelope;
pub mod error;
pub mod extract;
mod health;
pub mod json;
mod token;
mod users;
mod wellknown;

use std::{any::Any, convert::Infallible, time::Duration};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, FromRef, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, Method},
    middleware,
    response::{IntoResponse, Response},
    Router,
};
use tower::{Service, ServiceBuilder};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
};

use crate::{service::ClientInfo, state::AppState};
use clients::Clients;
use envelope::{EnvelopeLayer, REQUEST_ID};
use error::ApiError;

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
    let credential_endpoints = Router::new()
        .merge(users::register_router())
        .merge(token::router())
        .merge(auth::credential_router())
        .route_layer(middleware::from_fn_with_state(
            state.clients.clone(),
            clients::rate_limit,
        ));
    let routes = Router::new()
        .merge(credential_endpoints)
        .merge(users::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(wellknown::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state);
    layers(routes, limits)
}

/// The layers every request goes through once: the envelope (trailing slash, span and log
/// line, request id, URI and header limits, timeout, security headers), a handler's panic
/// turned into a `500` in the error shape, CORS and the body limit. They wrap the router as a
/// whole, not each route (`Router::layer`), which would box and clone them per route on every
/// request.
fn layers(
    routes: Router,
    limits: &HttpLimits,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
       + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .layer(EnvelopeLayer {
            timeout: limits.request_timeout,
        })
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(panic_response))
        .option_layer(cors(&limits.cors_origins))
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .service(routes)
}

/// A handler's panic: logged (inside the request's span, so with its request id) and answered
/// like any internal error.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
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
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
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

#[cfg(test)]
mod tests {
    use axum::{http::StatusCode, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_error_shape() {
        let routes = Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("something broke");
                }
                "unreachable"
            }),
        );
        let limits = HttpLimits {
            request_timeout: Duration::from_secs(5),
            cors_origins: Vec::new(),
        };
        let request = Request::get("/boom").body(Body::empty()).unwrap();
        let response = layers(routes, &limits).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(envelope::REQUEST_ID));
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("something broke"), "{body}");
    }
}
