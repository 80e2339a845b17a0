//! The HTTP server every service uses: bind (port 0 for tests), request spans with a request
//! id, a body limit, a request timeout and a concurrency limit, graceful shutdown on the
//! service's token; plus health and metrics routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::HttpConfig;
use crate::problem::Problem;

/// Bodies above this are refused (413) unless a router sets its own `DefaultBodyLimit`.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A request still running after this answers 503: a stuck database or a slow client must
/// not hold a connection (and its pool slot) forever. Longer than any wait the services
/// build in (read-your-writes waits 2 s, a readiness check 3 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests handled at once per service; the rest queue in the listener. Bounds the memory
/// and the database pool pressure a burst of requests can cause.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn bind(cfg: &HttpConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(cfg.listen).await
}

/// Serves `router` until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = with_standard_layers(router);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The layers [`serve`] adds: request id (taken from `x-request-id` or generated, echoed in the
/// response), a request span with method, path and request id, the default body limit, the
/// [`REQUEST_TIMEOUT`] and the [`MAX_CONCURRENT_REQUESTS`] limit.
/// An inner `DefaultBodyLimit` on `router` overrides the default.
pub fn with_standard_layers(router: Router) -> Router {
    router
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        // Global: `Router::layer` wraps every route separately, so a plain
        // `ConcurrencyLimitLayer` would give each route its own budget.
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %request_id,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A readiness check: resolves to `Err(reason)` when the dependency is not usable.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`ReadyCheck`].
pub fn ready_check<F, Fut>(f: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// Pings Postgres through `pool`.
pub fn db_check(pool: PgPool) -> ReadyCheck {
    ready_check(move || {
        let pool = pool.clone();
        async move { crate::db::ping(&pool).await.map_err(|e| e.to_string()) }
    })
}

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`: 200 while the process serves requests. `GET /readyz`: 200 when every check
/// passes, else 503 problem+json naming the failing checks.
pub fn health_router(checks: Vec<(&'static str, ReadyCheck)>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move { readiness(&checks).await }
            }),
        )
}

async fn readiness(checks: &[(&'static str, ReadyCheck)]) -> Response {
    let results = futures::future::join_all(checks.iter().map(|(name, check)| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
        };
        (*name, outcome)
    }))
    .await;
    let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE).with_title("Not ready");
    for (name, outcome) in results {
        if let Err(reason) = outcome {
            tracing::warn!(check = name, %reason, "readiness check failed");
            problem = problem.with_field_error(name, reason);
        }
    }
    if problem.errors.is_empty() {
        "ready".into_response()
    } else {
        let names: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        let detail = format!("failing checks: {}", names.join(", "));
        problem.with_detail(detail).into_response()
    }
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// `GET /metrics` in Prometheus text format. The global recorder is installed on the first
/// call; later calls (several services in one test process) share it.
pub fn metrics_router() -> Router {
    let handle = PROMETHEUS
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone();
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                match handle {
                    Some(h) => {
                        h.run_upkeep();
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            h.render(),
                        )
                            .into_response()
                    }
                    None => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail("metrics recorder unavailable")
                        .into_response(),
                }
            }
        }),
    )
}
