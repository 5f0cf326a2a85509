//! What every request and response goes through, once, around the router as a whole:
//! tower-http's layers for the trailing slash, the request id, the request's span and log
//! line and a panic turned into a `500`, and two of authd's own: the security headers, and the
//! URI and header-size limits with the request timeout.

use std::{any::Any, convert::Infallible, time::Duration};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderName, HeaderValue},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::CorsLayer,
    normalize_path::NormalizePathLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::{field::Empty, Span};

use super::{error::ApiError, json::MAX_BODY_BYTES};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request target (path and query) accepted; no authd URL comes near it.
const MAX_URI_BYTES: usize = 2048;
/// Most bytes of request headers accepted (hyper's own, larger, limit applies first).
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest request path written to the log as it is; a longer one is cut there.
const MAX_LOGGED_PATH: usize = 128;

/// Responses are JSON about credentials: never cached unless a handler says otherwise, never
/// framed, never sniffed, never a referrer. Each is set only if the handler did not set it.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    ),
];

/// `routes` inside, from the outside in:
/// - the trailing slash trimmed (`/users/me/` is `/users/me`);
/// - the client's `X-Request-Id` kept, or a UUID made, and echoed on the response;
/// - the `request` span (method, path, request id, and the user once authenticated) and one
///   log line per request with its status and latency;
/// - the security headers a handler did not set;
/// - `414`/`431` for an over-long request target or header block, and `503` for a request
///   not answered within `timeout` (its work is dropped, and with it any open transaction);
/// - a handler's panic answered `500` in the error shape;
/// - CORS when configured, and the body limit.
///
/// They wrap the router as a whole, not each route (`Router::layer`), which would box and
/// clone them per route on every request.
pub fn around(
    routes: Router,
    timeout: Duration,
    cors: Option<CorsLayer>,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
       + Clone
       + Send
       + Sync
       + 'static {
    let inner = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .map_response(security_headers)
        .layer(middleware::from_fn_with_state(timeout, limits))
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(panic_response))
        .map_response(|response: Response<_>| response.map(Body::new))
        .option_layer(cors)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .service(routes);
    NormalizePathLayer::trim_trailing_slash()
        .layer(inner)
        .map_response(|response: Response<_>| response.map(Body::new))
}

/// The `request` span; the user is recorded into it once authenticated.
fn request_span(req: &Request) -> Span {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = logged_path(req.uri().path()),
        request_id = Empty,
        user_id = Empty,
    );
    if let Some(id) = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|id| id.to_str().ok())
    {
        span.record("request_id", id);
    }
    span
}

/// Sets each of [`SECURITY_HEADERS`] that the handler did not. One function rather than a
/// `SetResponseHeaderLayer` per header: five layers nest five futures, each holding its header,
/// that every response moves through.
fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // Room for all of them at once, rather than growing the map as they come.
    headers.reserve(SECURITY_HEADERS.len());
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(value);
    }
    response
}

/// One line per request, inside its span.
fn log_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "request"
    );
}

/// `path`, or its first [`MAX_LOGGED_PATH`] bytes (at a character boundary) if longer: a
/// client's path goes to the log, so its size there is bounded.
fn logged_path(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Refuses a request over the size limits (`414`, `431`), and answers `503` for one that
/// takes longer than `timeout`.
async fn limits(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if let Some(refusal) = over_limits(&req) {
        return refusal.into_response();
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            ApiError::Unavailable(None).into_response()
        }
    }
}

/// The size limit a request breaks, if any.
fn over_limits(req: &Request) -> Option<ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong);
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (header_bytes > MAX_HEADER_BYTES).then_some(ApiError::HeadersTooLarge)
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

#[cfg(test)]
mod tests {
    use axum::{http::StatusCode, routing::get};

    use super::*;

    async fn call(routes: Router, timeout: Duration, uri: &str) -> Response {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        around(routes, timeout, None)
            .oneshot(request)
            .await
            .unwrap()
    }

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
        let response = call(routes, Duration::from_secs(5), "/boom").await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(REQUEST_ID));
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("something broke"), "{body}");
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_gets_503_with_the_usual_headers() {
        let routes = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        );
        let response = call(routes, Duration::from_millis(50), "/slow/").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        let id = response.headers()[REQUEST_ID].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }

    #[tokio::test]
    async fn handler_headers_win_over_the_defaults() {
        let routes = Router::new().route(
            "/cached",
            get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "") }),
        );
        let response = call(routes, Duration::from_secs(2), "/cached").await;
        let values: Vec<_> = response
            .headers()
            .get_all(header::CACHE_CONTROL)
            .iter()
            .collect();
        assert_eq!(values, ["public, max-age=60"]);
    }
}
