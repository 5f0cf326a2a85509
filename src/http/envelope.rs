//! What every request and response goes through, in one layer: the trailing slash, the
//! request's span and log line, the request id, the URI and header-size limits, the request
//! timeout and the fixed security headers.
//!
//! One service instead of a stack of single-purpose layers (tower-http's `TraceLayer`,
//! `SetRequestId`, `PropagateRequestId`, five `SetResponseHeader`s and a `from_fn`
//! middleware), which on the `GET /users/me` hot path cost a boxed future and a service clone
//! per layer, a clock read per request even with the log line filtered out, and a header map
//! that grew twice per response (BENCHMARKS.md has the before and after). It wraps the router
//! as a whole rather than each route, so a request pays for it once.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::Request,
    http::{header, uri::PathAndQuery, HeaderName, HeaderValue, Uri},
    response::{IntoResponse, Response},
};
use tower::{Layer, Service};
use tracing::{field::Empty, Instrument};
use uuid::Uuid;

use super::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request target (path and query) accepted; no authd URL comes near it.
const MAX_URI_BYTES: usize = 2048;
/// Most bytes of request headers accepted (hyper's own, larger, limit applies first).
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Responses are JSON about credentials: never cached unless a handler says otherwise, never
/// framed, never sniffed, never a referrer. Each is set only if the handler did not set it.
const SECURITY_HEADERS: [(HeaderName, &str); SECURITY_HEADER_COUNT] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
];

/// How many headers the envelope may add to a response: the security headers and the
/// request id.
pub const ADDED_HEADERS: usize = SECURITY_HEADER_COUNT + 1;
const SECURITY_HEADER_COUNT: usize = 5;

/// Wraps a service in [`Envelope`].
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLayer {
    /// A request not answered within this gets `503` (`Retry-After`).
    pub timeout: Duration,
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Envelope<S> {
        Envelope {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Longest request path written to the log as it is; a longer one is cut there.
const MAX_LOGGED_PATH: usize = 128;

/// For each request:
/// - trims the path's trailing slashes (and a doubled leading one), so that `/users/me/` is
///   `/users/me`, as tower-http's `NormalizePath` does but with one allocation instead of four;
/// - opens the `request` span (method, path, request id, and the user once authenticated)
///   and, when info-level logging is on, writes one line with the status and latency;
/// - refuses an over-long request target (`414`) or header block (`431`);
/// - keeps the client's `X-Request-Id` or makes one (a UUID), records it on the current span
///   and echoes it on the response;
/// - answers `503` for a request that takes longer than the timeout (the work is dropped, and
///   with it any open transaction, which rolls back);
/// - adds the security headers a handler did not set.
#[derive(Debug, Clone)]
pub struct Envelope<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request> for Envelope<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        trim_trailing_slash(req.uri_mut());
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            route = logged_path(req.uri().path()),
            request_id = Empty,
            user_id = Empty,
        );
        let started = (!span.is_disabled()).then(Instant::now);
        let entered = span.enter();
        let request_id = match req.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let mut buffer = Uuid::encode_buffer();
                let id = Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
                HeaderValue::from_str(id).expect("a UUID is a valid header value")
            }
        };
        if let Ok(id) = request_id.to_str() {
            span.record("request_id", id);
        }
        let timeout = self.timeout;
        let answer = match refusal(&req) {
            Some(refused) => Err(refused),
            None => Ok(self.inner.call(req)),
        };
        drop(entered);
        let answered = async move {
            let mut response = match answer {
                Err(refused) => refused.into_response(),
                Ok(answer) => match tokio::time::timeout(timeout, answer).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        tracing::warn!(
                            timeout_ms = timeout.as_millis() as u64,
                            "request timed out"
                        );
                        ApiError::Unavailable(None).into_response()
                    }
                },
            };
            let headers = response.headers_mut();
            headers.reserve(ADDED_HEADERS);
            for (name, value) in SECURITY_HEADERS {
                headers
                    .entry(name)
                    .or_insert_with(|| HeaderValue::from_static(value));
            }
            headers.entry(REQUEST_ID).or_insert(request_id);
            if let Some(started) = started {
                tracing::info!(
                    status = response.status().as_u16(),
                    latency_us = started.elapsed().as_micros() as u64,
                    "request"
                );
            }
            Ok(response)
        };
        Box::pin(answered.instrument(span))
    }
}

/// `/a/b/` and `//a/b` become `/a/b`; the query is kept.
fn trim_trailing_slash(uri: &mut Uri) {
    let path = uri.path();
    if path == "/" || !path.ends_with('/') && !path.starts_with("//") {
        return;
    }
    let trimmed = path.trim_matches('/');
    let query = uri.query();
    // Exactly sized: `Bytes` takes a full `Vec` as it is, but a partly empty one through a
    // second allocation.
    let mut target = String::with_capacity(1 + trimmed.len() + query.map_or(0, |q| 1 + q.len()));
    target.push('/');
    target.push_str(trimmed);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    // Made from a valid target minus some slashes, it parses; if it did not, the URI would
    // be left as it came rather than replaced by one without a path.
    let Ok(path_and_query) = PathAndQuery::from_maybe_shared(Bytes::from(target)) else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    if let Ok(trimmed) = Uri::from_parts(parts) {
        *uri = trimmed;
    }
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

/// The `414` or `431` for a request over the size limits, if it is.
fn refusal(req: &Request) -> Option<ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::StatusCode};
    use tower::ServiceExt;

    async fn slow(_: Request) -> Result<Response, Infallible> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(StatusCode::OK.into_response())
    }

    #[test]
    fn trims_trailing_slashes_and_keeps_the_rest() {
        for (given, expected) in [
            ("/users/me/", "/users/me"),
            ("/users/me//", "/users/me"),
            ("//users/me", "/users/me"),
            ("/users/me/?a=b&c=%2F", "/users/me?a=b&c=%2F"),
            ("/users/me", "/users/me"),
            ("/users/me?next=/", "/users/me?next=/"),
            ("/", "/"),
            ("//", "/"),
            ("http://auth.example/token/", "http://auth.example/token"),
        ] {
            let mut uri: Uri = given.parse().unwrap();
            trim_trailing_slash(&mut uri);
            assert_eq!(uri.to_string(), expected, "{given}");
        }
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_gets_503_with_the_usual_headers() {
        let service = EnvelopeLayer {
            timeout: Duration::from_millis(50),
        }
        .layer(tower::service_fn(slow));
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        let id = response.headers()[REQUEST_ID].to_str().unwrap();
        assert!(Uuid::parse_str(id).is_ok());
    }

    #[tokio::test]
    async fn handler_headers_win_over_the_defaults() {
        let service = EnvelopeLayer {
            timeout: Duration::from_secs(2),
        }
        .layer(tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>(
                ([(header::CACHE_CONTROL, "public, max-age=60")], "").into_response(),
            )
        }));
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=60"
        );
        assert_eq!(
            response
                .headers()
                .get_all(header::CACHE_CONTROL)
                .iter()
                .count(),
            1
        );
    }
}
