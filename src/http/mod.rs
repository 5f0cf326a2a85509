//! The HTTP layer: one module per resource, each with its `router()`, merged here with the
//! middleware every request goes through.

mod auth;
mod health;
pub mod json;
mod token;
mod users;
mod wellknown;

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath},
    http::{header, request::Parts, HeaderName, HeaderValue, Request, Response},
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};
use tracing::{field::Empty, Span};

use crate::{error::ApiError, service::ClientInfo, state::AppState};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest `User-Agent` kept with a session.
const MAX_USER_AGENT: usize = 256;

/// Every route, with request ids, one log line per request, and the body limit.
/// Trailing slashes are handled by the caller ([`crate::startup`]), which trims them before
/// routing so that `/users/me/` and `/users/me` are one route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(users::router())
        .merge(token::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(wellknown::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
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
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                )),
        )
        .with_state(state)
}

fn request_span<B>(req: &Request<B>) -> Span {
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

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Ok(ClientInfo { ip, user_agent })
    }
}
