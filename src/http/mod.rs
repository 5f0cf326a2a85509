//! The HTTP layer: one module per resource, each with its `router()`, merged here with the
//! middleware every request goes through.

mod auth;
pub mod clients;
mod health;
pub mod json;
mod token;
mod users;
mod wellknown;

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, FromRef, FromRequestParts, MatchedPath, Request},
    http::{header, request::Parts, HeaderName, HeaderValue, Method, Response},
    middleware::{self, Next},
    response::IntoResponse,
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};
use tracing::{field::Empty, Span};

use crate::{error::ApiError, service::ClientInfo, state::AppState};
use clients::Clients;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest `User-Agent` kept with a session.
const MAX_USER_AGENT: usize = 256;
/// Longest request target (path and query) accepted; no authd URL comes near it.
const MAX_URI_BYTES: usize = 2048;
/// Most bytes of request headers accepted (hyper's own, larger, limit applies first).
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Limits that the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request not answered within this gets `503` (`Retry-After`).
    pub request_timeout: Duration,
    pub cors_origins: Vec<HeaderValue>,
}

/// Every route, with request ids, one log line per request, security headers, CORS, the
/// body, URI and header limits, the request timeout, and the per-IP rate limit on the
/// credential endpoints. Trailing slashes are handled by the caller ([`crate::startup`]),
/// which trims them before routing so that `/users/me/` and `/users/me` are one route.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let credential_endpoints = Router::new()
        .merge(users::register_router())
        .merge(token::router())
        .merge(auth::credential_router())
        .route_layer(middleware::from_fn_with_state(
            state.clients.clone(),
            clients::rate_limit,
        ));
    let timeout = limits.request_timeout;
    Router::new()
        .merge(credential_endpoints)
        .merge(users::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(wellknown::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(move |req, next| {
            request_limits(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(log_response)
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Responses are JSON about credentials: never cached unless a handler says
                // otherwise, never framed, never sniffed, never a referrer.
                .layer(set_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(set_header(header::REFERRER_POLICY, "no-referrer"))
                .layer(set_header(header::X_FRAME_OPTIONS, "DENY"))
                .layer(set_header(header::CACHE_CONTROL, "no-store"))
                .layer(set_header(header::CONTENT_SECURITY_POLICY, CSP))
                .option_layer(cors(&limits.cors_origins)),
        )
        .with_state(state)
}

const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn set_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
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

/// Refuses over-long request targets (`414`) and header blocks (`431`), and answers `503`
/// for a request that takes longer than `timeout` (the work is dropped, and with it any
/// open transaction, which rolls back).
async fn request_limits(timeout: Duration, req: Request, next: Next) -> axum::response::Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::UriTooLong.into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            ApiError::Unavailable.into_response()
        }
    }
}

fn request_span<B>(req: &axum::http::Request<B>) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str);
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), route, request_id, user_id = Empty)
}

fn log_response<B>(res: &Response<B>, latency: Duration, _span: &Span) {
    tracing::info!(
        status = res.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "request"
    );
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
