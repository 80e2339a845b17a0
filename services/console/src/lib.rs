//! The operator console: one address where a person sees consumer lag (with its history
//! from Prometheus), the sagas and their timelines, the dead letters and the outbox backlog,
//! and acts on them (saga operator actions, dead-letter replay).
//!
//! It is server-rendered HTML over what the suite already exposes: the services' HTTP APIs
//! (the orchestrator's saga API and operator actions, every service's `/metrics` and
//! `/admin/logs`), the lag exporter's `/lag`, Prometheus' HTTP API, and the dead-letter topic
//! through `saga_consumer::dead_letters` (the library behind `cargo xtask dlq`). It reads no
//! database. Every page needs the admin credential ([`session`]). docs/console.md.
//!
//! Configuration (`--config FILE`, `APP_*`): `http.listen`, `kafka.*`, `registry.url`,
//! `auth.admin_token`, `console.*` ([`ConsoleConfig`]).

pub mod config;
pub mod session;
pub mod upstream;
pub mod views;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use saga_service_kit::auth::AdminAuth;
use saga_service_kit::logs::LogLine;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConsoleConfig};
use session::Sessions;
use upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("serve: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Auth(#[from] saga_service_kit::auth::WeakToken),
}

/// What a page handler can fail with; shown as an HTML page, details logged.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match &self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Upstream(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                StatusCode::NOT_FOUND
            }
            PageError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        tracing::warn!(error = %self, "console page failed");
        let body = views::layout(
            "Error",
            None,
            None,
            html! { p.error #error { (self.to_string()) } },
        );
        (status, body).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    upstream: Upstream,
    sessions: Sessions,
    config: ConsoleConfig,
}

pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let auth = AdminAuth::new(&config.auth)?;
        let token = config.auth.admin_token.as_ref().map(|t| t.expose());
        let sessions = Sessions::new(auth, token);
        let listener = TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| AppError::Bind(config.http.listen, e))?;
        Ok(App {
            listener,
            state: AppState {
                upstream: Upstream::new(config.clone()),
                sessions,
                config: config.console,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = router(self.state);
        saga_service_kit::http::serve(self.listener, router, shutdown)
            .await
            .map_err(AppError::Serve)
    }
}

fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(overview))
        .route("/lag", get(lag))
        .route("/lag/rewind", get(rewind_page).post(rewind))
        .route("/sagas", get(sagas))
        .route("/sagas/{id}", get(saga))
        .route("/sagas/{id}/{action}", post(saga_action))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{id}/replay", post(replay))
        .route("/outbox", get(outbox))
        .route_layer(axum::middleware::from_fn_with_state(
            state.sessions.clone(),
            session::require,
        ));
    Router::new()
        .merge(pages)
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/{file}", get(asset))
        .with_state(state)
        .merge(saga_service_kit::http::health_router(Vec::new()))
        .merge(saga_service_kit::http::metrics_router())
}

#[derive(Debug, Deserialize)]
struct Flash {
    flash: Option<String>,
}

// ---------- login ----------

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    failed: Option<bool>,
}

async fn login_form(Query(q): Query<LoginQuery>) -> Markup {
    views::login(q.next.as_deref().unwrap_or("/"), q.failed.unwrap_or(false))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only local paths: a login link must not bounce the operator to another site.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") => n,
        _ => "/",
    }
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref()).to_owned();
    match state.sessions.login(&form.token) {
        Some(cookie) => (
            [(header::SET_COOKIE, session::set_cookie(Some(&cookie)))],
            Redirect::to(&next),
        )
            .into_response(),
        None => {
            tracing::warn!("console login refused");
            Redirect::to(&format!(
                "/login?failed=true&next={}",
                session::urlencode(&next)
            ))
            .into_response()
        }
    }
}

async fn logout() -> Response {
    (
        [(header::SET_COOKIE, session::set_cookie(None))],
        Redirect::to("/login"),
    )
        .into_response()
}

// ---------- assets ----------

/// The vendored chart library (uPlot, MIT, see assets/README.md) and the console's own
/// script and style, compiled in so the binary is the whole console.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static str, &str) = match file.as_str() {
        "uPlot.iife.min.js" => (
            include_str!("../assets/uPlot.iife.min.js"),
            "text/javascript",
        ),
        "uPlot.min.css" => (include_str!("../assets/uPlot.min.css"), "text/css"),
        "console.js" => (include_str!("../assets/console.js"), "text/javascript"),
        "console.css" => (include_str!("../assets/console.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

// ---------- pages ----------

async fn overview(State(state): State<AppState>) -> Markup {
    let up = &state.upstream;
    let (lag, stuck, incidents, outbox) = tokio::join!(
        up.lag(),
        up.sagas(None, Some(state.config.stuck_after_secs)),
        up.sagas(Some("incident"), None),
        outbox_rows(up),
    );
    let body = html! {
        h2 { a href="/lag" { "Consumer lag" } }
        @match &lag {
            Ok(report) => {
                table #groups {
                    thead { tr { th { "group" } th { "status" } th { "lag" } th { "lag (s)" } } }
                    tbody { @for g in &report.groups {
                        tr.group data-group=(g.group) data-status=(g.status) {
                            td { (g.group) } td { (g.status) } td.lag { (g.lag_sum) } td { (format!("{:.1}", g.max_lag_seconds)) }
                        }
                    } }
                }
            }
            Err(e) => { (views::unavailable("Lag", e)) }
        }
        h2 { a href="/sagas" { "Sagas needing attention" } }
        @match (&stuck, &incidents) {
            (Ok(stuck), Ok(incidents)) => {
                p { a href="/sagas?state=incident" { (incidents.len()) " open incidents" } ", " (stuck.len()) " stuck sagas (same step for " (state.config.stuck_after_secs) " s or more)" }
            }
            (Err(e), _) | (_, Err(e)) => { (views::unavailable("Sagas", e)) }
        }
        h2 { a href="/dead-letters" { "Dead letters" } }
        p { a href="/dead-letters" { "List, decode and replay them" } }
        h2 { a href="/outbox" { "Outbox backlog" } }
        (views::outbox(&outbox))
    };
    views::layout("Overview", Some(10), None, body)
}

async fn lag(State(state): State<AppState>) -> Markup {
    let up = &state.upstream;
    let (report, history) = tokio::join!(
        up.lag(),
        up.prometheus_range("sum by (group) (kafka_consumergroup_lag)")
    );
    let body = html! {
        @match &report {
            Ok(r) => {
                p.polled { "Read from the broker by the lag exporter; polled at "
                    (chrono::DateTime::from_timestamp(r.polled_at_unix as i64, 0).map(|t| t.to_rfc3339()).unwrap_or_default())
                    ". Status as Burrow evaluates it: OK, WARNING (lag growing), STALLED (commits stopped while lagging), STOPPED (no commits for long)." }
                (views::lag_table(&r.groups))
            }
            Err(e) => { (views::unavailable("Lag", e)) }
        }
        p { a #rewind-link href="/lag/rewind" { "Reprocess: rewind a consumer group" } }
        h2 { "Lag per group, last " (state.config.chart_minutes) " minutes" }
        @match &history {
            Ok(series) => { (views::lag_chart(series, "group")) }
            Err(e) => { (views::unavailable("Lag history (Prometheus)", e)) }
        }
    };
    views::layout("Consumer lag", Some(5), None, body)
}

#[derive(Debug, Deserialize)]
struct RewindForm {
    group: String,
    to: String,
    /// "dry-run" or "rewind" (the button pressed).
    action: String,
}

/// The rewind form, on a page of its own: the lag page refreshes itself, which would reset
/// a half-filled form.
async fn rewind_page(State(state): State<AppState>) -> Result<Markup, PageError> {
    let report = state.upstream.lag().await?;
    Ok(views::layout(
        "Reprocess",
        None,
        None,
        views::rewind_form(&report.groups),
    ))
}

/// Reprocessing (docs/messaging.md, "Reprocessing"): a dry run shows what a rewind of the
/// group would deliver again; "rewind" has the service stop its consumer, move the group's
/// offsets and start it again. The inbox drops what was already applied.
async fn rewind(
    State(state): State<AppState>,
    Form(form): Form<RewindForm>,
) -> Result<Markup, PageError> {
    let dry_run = form.action != "rewind";
    let answer = state.upstream.rewind(&form.group, &form.to, dry_run).await;
    if !dry_run && answer.is_ok() {
        tracing::warn!(group = %form.group, to = %form.to, "consumer group rewound from the console");
    }
    let body = match answer {
        Ok(answer) => html! {
            p #rewind-result data-dry-run=(dry_run) data-reprocessed=(answer["reprocessed"].as_i64().unwrap_or(0)) {
                @if dry_run { "Dry run: nothing was changed." } @else { "Rewound: the consumer runs again from these offsets." }
            }
            pre #rewind-plan { (answer["summary"].as_str().unwrap_or_default()) }
            @if dry_run {
                form method="post" action="/lag/rewind" {
                    input type="hidden" name="group" value=(form.group);
                    input type="hidden" name="to" value=(form.to);
                    button #rewind-confirm type="submit" name="action" value="rewind" { "Rewind now" }
                }
            }
            p { a href="/lag" { "Back to the lag page" } }
        },
        // A refusal (409: reapply on effects, live members; 422: bad target) is for the
        // operator to read, not an error page.
        Err(e @ upstream::UpstreamError::Status { .. }) => html! {
            p.error #rewind-refused { "Refused: " (e.to_string()) }
            p { a href="/lag" { "Back to the lag page" } }
        },
        Err(e) => return Err(e.into()),
    };
    Ok(views::layout(
        &format!("Rewind {}", form.group),
        None,
        None,
        body,
    ))
}

#[derive(Debug, Deserialize)]
struct SagaQuery {
    state: Option<String>,
    flash: Option<String>,
}

async fn sagas(
    State(state): State<AppState>,
    Query(q): Query<SagaQuery>,
) -> Result<Markup, PageError> {
    let filter = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            views::SAGA_STATES
                .iter()
                .copied()
                .find(|known| *known == s)
                .ok_or_else(|| PageError::NotFound(format!("unknown saga state {s:?}")))
        })
        .transpose()?;
    let up = &state.upstream;
    let (items, stuck) = tokio::join!(
        up.sagas(filter, None),
        up.sagas(filter, Some(state.config.stuck_after_secs))
    );
    let mut items = items?;
    let stuck: Vec<String> = stuck?
        .iter()
        .filter_map(|s| s["saga_id"].as_str().map(str::to_owned))
        .collect();
    // Stuck first; otherwise the orchestrator's order.
    items.sort_by_key(|s| {
        !stuck
            .iter()
            .any(|x| Some(x.as_str()) == s["saga_id"].as_str())
    });
    let body = html! {
        (views::state_filter(filter))
        (views::saga_list(&items, &stuck))
    };
    Ok(views::layout("Sagas", None, q.flash.as_deref(), body))
}

async fn saga(
    State(state): State<AppState>,
    Path(id): Path<uuid::Uuid>,
    Query(flash): Query<Flash>,
) -> Result<Markup, PageError> {
    let up = &state.upstream;
    let saga = up.saga(&id.to_string()).await?;
    let order_id = saga["order_id"].as_str().unwrap_or_default().to_owned();
    let logs = saga_logs(up, &state.config.orchestrator, &order_id).await;
    let title = format!("Saga {}", saga["saga_id"].as_str().unwrap_or_default());
    Ok(views::layout(
        &title,
        None,
        flash.flash.as_deref(),
        views::saga_page(&saga, &logs),
    ))
}

/// The saga's trace ids come from the orchestrator's own lines about the order (its consume
/// span carries both the order id and the trace continued from the Kafka headers); then
/// every service is asked for the lines of those traces.
async fn saga_logs(up: &Upstream, orchestrator: &str, order_id: &str) -> Markup {
    let mut errors = Vec::new();
    let mut trace_ids: Vec<String> = match up.logs(orchestrator, ("order_id", order_id)).await {
        Ok(lines) => lines.into_iter().filter_map(|l| l.trace_id).collect(),
        Err(e) => {
            errors.push(views::unavailable(&format!("{orchestrator} logs"), &e));
            Vec::new()
        }
    };
    trace_ids.sort();
    trace_ids.dedup();
    let services: Vec<String> = up.service_names().map(str::to_owned).collect();
    let mut lines: Vec<(String, LogLine)> = Vec::new();
    let queries = services.iter().flat_map(|service| {
        trace_ids
            .iter()
            .map(move |t| async move { (service, up.logs(service, ("trace_id", t)).await) })
    });
    for (service, result) in futures::future::join_all(queries).await {
        match result {
            Ok(found) => lines.extend(found.into_iter().map(|l| (service.clone(), l))),
            Err(e) => errors.push(views::unavailable(&format!("{service} logs"), &e)),
        }
    }
    lines.sort_by_key(|l| l.1.at);
    // Services started in one process (the tests) share one log ring: show each line once.
    lines.dedup_by(|a, b| a.1 == b.1);
    views::log_lines(&trace_ids, &lines, &errors)
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    reason: String,
}

async fn saga_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(uuid::Uuid, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !["retry", "skip", "abort"].contains(&action.as_str()) {
        return Err(PageError::NotFound(format!(
            "no operator action {action:?}"
        )));
    }
    let reason = form.reason.trim();
    let flash = if reason.is_empty() {
        "An operator action needs a reason.".to_owned()
    } else {
        match state
            .upstream
            .saga_action(&id.to_string(), &action, reason)
            .await
        {
            Ok(_) => format!("{action} done: {reason}"),
            // The orchestrator refuses actions that do not apply (409): tell the operator.
            Err(e @ upstream::UpstreamError::Status { .. }) => format!("{action} refused: {e}"),
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Redirect::to(&format!("/sagas/{id}?flash={}", session::urlencode(&flash))).into_response())
}

async fn dead_letters(
    State(state): State<AppState>,
    Query(flash): Query<Flash>,
) -> Result<Markup, PageError> {
    let letters = state.upstream.dead_letters().await?;
    let body = html! {
        p { (letters.len()) " dead letters on " code { (state.config.dead_letter_topic) } ". A replay publishes the original record (same message id) to its source topic; consumers that already applied it skip it." }
        (views::dead_letters(&letters))
    };
    Ok(views::layout(
        "Dead letters",
        None,
        flash.flash.as_deref(),
        body,
    ))
}

async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let flash = match state.upstream.replay(&id).await? {
        Some(topic) => format!("Dead letter {id} replayed to {topic}."),
        None => return Err(PageError::NotFound(format!("no dead letter {id}"))),
    };
    tracing::info!(dead_letter = %id, "dead letter replayed from the console");
    Ok(Redirect::to(&format!(
        "/dead-letters?flash={}",
        session::urlencode(&flash)
    ))
    .into_response())
}

async fn outbox_rows(
    up: &Upstream,
) -> Vec<(
    String,
    Result<upstream::OutboxFigures, upstream::UpstreamError>,
)> {
    let names: Vec<String> = up.service_names().map(str::to_owned).collect();
    let figures = futures::future::join_all(names.iter().map(|n| up.outbox(n))).await;
    names.into_iter().zip(figures).collect()
}

async fn outbox(State(state): State<AppState>) -> Markup {
    let rows = outbox_rows(&state.upstream).await;
    let body = html! {
        p { "From each service's /metrics: rows in its outbox not yet published, and how long the oldest has waited." }
        (views::outbox(&rows))
    };
    views::layout("Outbox backlog", Some(5), None, body)
}
