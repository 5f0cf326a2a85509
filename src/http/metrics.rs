//! `GET /metrics`: Prometheus text format, through the `metrics` facade and its Prometheus
//! exporter. Every request is timed into one histogram by method, route template
//! (`/users/me/api-keys/{id}`, never the raw path) and status, whose `_count` counts them; the service counts logins, refreshes and
//! second-factor attempts by outcome; the gauges (hashing jobs, database connections) are
//! read at each scrape.

use std::{
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{ready, Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use metrics::Histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{http::state::AppState, service::AuthService};

/// A histogram of request durations, in seconds, by method, route template and status.
const REQUESTS: &str = "authd_http_requests";
/// From a cached `/users/me` to a login's argon2 under load.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process's recorder, installed on first use (one per process: the `metrics` facade
/// has one global recorder, which every server in the process shares).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUESTS.to_owned()), DURATION_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was set first; then that one gets the figures.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often the recorded durations are folded into the histogram's buckets. The exporter
/// keeps each recorded value until then, so that without it an authd nobody scrapes would
/// hold every request's duration in memory.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds the recorded values into the buckets every [`UPKEEP_INTERVAL`], whether or not
/// anyone scrapes `/metrics`. Runs until the task is dropped.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn render(State(auth): State<AuthService>) -> Response {
    let (hashing, (open, idle)) = auth.gauges();
    metrics::gauge!("authd_hashing_jobs").set(hashing as f64);
    metrics::gauge!("authd_db_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("authd_db_connections", "state" => "busy").set(f64::from(open) - idle as f64);
    let handle = handle();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Times each routed request into the request histogram, under its method, route template
/// and status (the histogram's `_count` series counts them). A layer of its own rather than
/// `middleware::from_fn`, which clones and boxes the inner service for every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackLayer;

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Track(inner)
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone, Debug)]
pub struct Track<S>(S);

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        Timed {
            method: req.method().clone(),
            route,
            start: Instant::now(),
            inner: self.0.call(req),
        }
    }
}

pin_project! {
    /// A routed request's answer, timed.
    pub struct Timed<F> {
        method: Method,
        route: Option<MatchedPath>,
        start: Instant,
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(route)) = (&output, this.route.as_ref()) {
            series(this.method, route.as_str(), response.status())
                .record(this.start.elapsed().as_secs_f64());
        }
        Poll::Ready(output)
    }
}

/// The request histogram's series for one method, route and status.
fn series(method: &Method, route: &str, status: StatusCode) -> Histogram {
    metrics::histogram!(
        REQUESTS,
        "method" => method.as_str().to_owned(),
        "route" => route.to_owned(),
        "status" => status.as_str().to_owned(),
    )
}
