//! `GET /sagas/{id}` (saga id or order id), `GET /sagas?state=&stuck_for=&limit=&after=`,
//! and the operator actions `POST /sagas/{id}/{retry,skip,abort}` ([`admin_routes`]).

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use saga_service_kit::openapi::{self, AdminSecurity, FieldErrorDoc, ProblemDoc};
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath, ProblemQuery};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::engine::Status;
use crate::runner::{OperateError, OperatorAction, SagaRunner};
use crate::store::{self, IncidentRow, SagaRow, StoreError, TransitionRow};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// Longer than any saga lives; `now()` minus much more is out of PostgreSQL's range.
const MAX_STUCK_FOR: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no saga with saga id or order id {0}")]
    NotFound(Uuid),
    #[error("{0}")]
    BadRequest(String),
    /// The operator action does not apply to the saga's state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Saga(#[from] crate::SagaError),
}

impl From<OperateError> for ApiError {
    fn from(e: OperateError) -> Self {
        match e {
            OperateError::NotFound(id) => ApiError::NotFound(id),
            OperateError::NotApplicable(why) => ApiError::Conflict(why),
            OperateError::Saga(e) => ApiError::Saga(e),
        }
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        match e {
            ApiError::NotFound(_) => Problem::not_found(e.to_string()),
            ApiError::BadRequest(detail) => Problem::bad_request(detail),
            ApiError::Conflict(detail) => Problem::conflict(detail),
            ApiError::Store(inner) => {
                // Logged here, inside the request span; the client sees a generic 500.
                tracing::error!(error = %inner, "saga query failed");
                Problem::internal()
            }
            ApiError::Saga(inner) => {
                tracing::error!(error = %inner, "operator action failed");
                Problem::internal()
            }
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        Problem::from(self).into_response()
    }
}

/// The document at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orchestrator",
        description = "The order saga's state: each saga's summary and timeline, sagas by state \
                       or stuck at a step, and (with the admin token) the operator actions \
                       that resolve a saga that cannot finish by itself."
    ),
    paths(list_sagas, get_saga, retry_saga, skip_saga, abort_saga),
    components(schemas(
        SagaSummary,
        SagaDetail,
        SagaPage,
        ActionRequest,
        IncidentRow,
        TransitionRow,
        ProblemDoc,
        FieldErrorDoc
    )),
    modifiers(&AdminSecurity)
)]
pub struct ApiDoc;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/sagas", get(list_sagas))
        .route("/sagas/{id}", get(get_saga))
        .merge(openapi::router(ApiDoc::openapi()))
        .with_state(pool)
}

/// The operator actions, in a router of their own so an admin credential layer applies to
/// them in one place.
pub fn admin_routes(pool: PgPool, runner: SagaRunner) -> Router {
    Router::new()
        .route("/sagas/{id}/retry", post(retry_saga))
        .route("/sagas/{id}/skip", post(skip_saga))
        .route("/sagas/{id}/abort", post(abort_saga))
        .with_state(AdminState { pool, runner })
}

#[derive(Clone)]
struct AdminState {
    pool: PgPool,
    runner: SagaRunner,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaSummary {
    pub saga_id: Uuid,
    pub order_id: Uuid,
    pub saga_type: String,
    #[schema(pattern = "^(running|compensating|aborting|completed|aborted|incident)$")]
    pub state: String,
    pub current_step: Option<String>,
    pub completed_steps: Vec<String>,
    pub failure_reason: Option<String>,
    pub version: i64,
    pub attempts: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The next deadline while running (the step's, capped by the saga's); null otherwise.
    pub deadline_at: Option<DateTime<Utc>>,
    pub saga_deadline_at: Option<DateTime<Utc>>,
    /// Since when the saga waits on its current step.
    pub step_started_at: DateTime<Utc>,
}

impl From<&SagaRow> for SagaSummary {
    fn from(r: &SagaRow) -> Self {
        SagaSummary {
            saga_id: r.saga_id,
            order_id: r.order_id,
            saga_type: r.saga_type.clone(),
            state: r.state.clone(),
            current_step: r.current_step.clone(),
            completed_steps: r.completed_steps.clone(),
            failure_reason: r.failure_reason.clone(),
            version: r.version,
            attempts: r.attempts,
            next_retry_at: r.next_retry_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            deadline_at: r.deadline_at,
            saga_deadline_at: r.saga_deadline_at,
            step_started_at: r.step_started_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaDetail {
    #[serde(flatten)]
    pub summary: SagaSummary,
    /// The saga's data (the order it carries out and what the steps recorded).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The open incident, or the last resolved one; null when the saga never had one.
    pub incident: Option<IncidentRow>,
    pub timeline: Vec<TransitionRow>,
}

/// A saga's summary, data, incident and timeline.
#[utoipa::path(get, path = "/sagas/{id}", params(("id" = Uuid, Path, description = "saga id or order id")),
    responses(
        (status = 200, body = SagaDetail),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "not a UUID"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no saga with this saga id or order id"),
    ))]
#[tracing::instrument(skip(pool))]
async fn get_saga(
    State(pool): State<PgPool>,
    ProblemPath(id): ProblemPath<Uuid>,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    let row = store::find(&pool, id)
        .await?
        .ok_or(ApiError::NotFound(id))?;
    detail(&pool, row).await.map(ProblemJson)
}

async fn detail(pool: &PgPool, row: SagaRow) -> Result<SagaDetail, ApiError> {
    let timeline = store::timeline(pool, row.saga_id).await?;
    let incident = store::latest_incident(pool, row.saga_id).await?;
    Ok(SagaDetail {
        summary: SagaSummary::from(&row),
        data: row.data,
        incident,
        timeline,
    })
}

/// Body of an operator action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Why: recorded in the saga's timeline and on the incident. Required, not blank.
    #[schema(
        min_length = 1,
        pattern = r"\S",
        example = "stock corrected by hand, ticket OPS-12"
    )]
    pub reason: String,
}

async fn act(
    state: AdminState,
    id: Uuid,
    action: OperatorAction,
    req: ActionRequest,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("reason must not be blank".into()));
    }
    let row = state
        .runner
        .operate(&state.pool, id, action, reason)
        .await?;
    detail(&state.pool, row).await.map(ProblemJson)
}

/// Re-sends the pending command and resets its attempts (an incident, or a running or
/// compensating saga waiting on a reply).
#[utoipa::path(post, path = "/sagas/{id}/retry", params(("id" = Uuid, Path, description = "saga id or order id")),
    request_body = ActionRequest, security(("admin_token" = [])),
    responses(
        (status = 200, body = SagaDetail, description = "the saga after the action; the timeline records it with the reason"),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "not a UUID, a blank reason, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no saga with this saga id or order id"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "the action does not apply to the saga's state (e.g. finished)"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
    ))]
#[tracing::instrument(skip(state, req))]
async fn retry_saga(
    State(state): State<AdminState>,
    ProblemPath(id): ProblemPath<Uuid>,
    ProblemJson(req): ProblemJson<ActionRequest>,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    act(state, id, OperatorAction::Retry, req).await
}

/// Marks the pending undo as done by hand (an incident while compensating) and goes on.
#[utoipa::path(post, path = "/sagas/{id}/skip", params(("id" = Uuid, Path, description = "saga id or order id")),
    request_body = ActionRequest, security(("admin_token" = [])),
    responses(
        (status = 200, body = SagaDetail, description = "the saga after the action; the timeline records it with the reason"),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "not a UUID, a blank reason, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no saga with this saga id or order id"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "the saga has no pending undo to skip"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
    ))]
#[tracing::instrument(skip(state, req))]
async fn skip_saga(
    State(state): State<AdminState>,
    ProblemPath(id): ProblemPath<Uuid>,
    ProblemJson(req): ProblemJson<ActionRequest>,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    act(state, id, OperatorAction::Skip, req).await
}

/// Compensates now: undoes the completed steps of a running saga (or an incident).
#[utoipa::path(post, path = "/sagas/{id}/abort", params(("id" = Uuid, Path, description = "saga id or order id")),
    request_body = ActionRequest, security(("admin_token" = [])),
    responses(
        (status = 200, body = SagaDetail, description = "the saga after the action; the timeline records it with the reason"),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "not a UUID, a blank reason, or a body that is not JSON"),
        (status = 401, body = ProblemDoc, content_type = "application/problem+json", description = "no or a wrong admin token"),
        (status = 403, body = ProblemDoc, content_type = "application/problem+json", description = "admin operations are disabled (no token configured)"),
        (status = 404, body = ProblemDoc, content_type = "application/problem+json", description = "no saga with this saga id or order id"),
        (status = 409, body = ProblemDoc, content_type = "application/problem+json", description = "the saga is not running (already compensating or finished)"),
        (status = 415, body = ProblemDoc, content_type = "application/problem+json", description = "the body is not application/json"),
        (status = 422, body = ProblemDoc, content_type = "application/problem+json", description = "the body does not match the schema"),
    ))]
#[tracing::instrument(skip(state, req))]
async fn abort_saga(
    State(state): State<AdminState>,
    ProblemPath(id): ProblemPath<Uuid>,
    ProblemJson(req): ProblemJson<ActionRequest>,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    act(state, id, OperatorAction::Abort, req).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    /// Only sagas not finished and at the same step for at least this long (`60s`, `5m`).
    stuck_for: Option<String>,
    limit: Option<i64>,
    /// The `next_after` of the previous page.
    after: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaPage {
    pub items: Vec<SagaSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<Uuid>,
}

/// Sagas by saga id, optionally only those in a state or stuck at a step.
#[utoipa::path(get, path = "/sagas",
    params(
        ("state" = Option<String>, Query, nullable = false, pattern = "^(running|compensating|aborting|completed|aborted|incident)$"),
        ("stuck_for" = Option<String>, Query, nullable = false, pattern = "^[0-9]+(ms|s|m|h|d)?$",
            description = "only sagas not finished and at the same step for at least this long (60s, 5m, 2h, 1d; a plain number is seconds)"),
        ("limit" = Option<i64>, Query, nullable = false, minimum = 1, maximum = 500, description = "default 50"),
        ("after" = Option<Uuid>, Query, nullable = false, description = "next_after of the previous page"),
    ),
    responses(
        (status = 200, body = SagaPage),
        (status = 400, body = ProblemDoc, content_type = "application/problem+json", description = "an invalid or unknown query parameter"),
    ))]
#[tracing::instrument(skip(pool))]
async fn list_sagas(
    State(pool): State<PgPool>,
    ProblemQuery(q): ProblemQuery<ListQuery>,
) -> Result<ProblemJson<SagaPage>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let stuck_for = q
        .stuck_for
        .as_deref()
        .map(saga_service_kit::duration::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // Clamped: beyond it PostgreSQL's timestamp arithmetic overflows, and no saga is older.
    let stuck_for = stuck_for.map(|d| d.min(MAX_STUCK_FOR).as_secs_f64());
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    // One extra row tells whether there is a next page.
    let mut rows = store::list(&pool, state, stuck_for, q.after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_after = if more {
        rows.last().map(|r| r.saga_id)
    } else {
        None
    };
    Ok(ProblemJson(SagaPage {
        items: rows.iter().map(SagaSummary::from).collect(),
        next_after,
    }))
}
