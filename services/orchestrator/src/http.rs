//! `GET /sagas/{id}` (saga id or order id) and `GET /sagas?state=&limit=&after=`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use saga_service_kit::problem::{Problem, ProblemJson, ProblemPath, ProblemQuery};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::Status;
use crate::store::{self, SagaRow, StoreError, TransitionRow};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no saga with saga id or order id {0}")]
    NotFound(Uuid),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        match e {
            ApiError::NotFound(_) => Problem::not_found(e.to_string()),
            ApiError::BadRequest(detail) => Problem::bad_request(detail),
            ApiError::Store(inner) => {
                // Logged here, inside the request span; the client sees a generic 500.
                tracing::error!(error = %inner, "saga query failed");
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

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/sagas", get(list_sagas))
        .route("/sagas/{id}", get(get_saga))
        .with_state(pool)
}

#[derive(Debug, Serialize)]
pub struct SagaSummary {
    pub saga_id: Uuid,
    pub order_id: Uuid,
    pub saga_type: String,
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
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SagaDetail {
    #[serde(flatten)]
    pub summary: SagaSummary,
    pub data: serde_json::Value,
    pub timeline: Vec<TransitionRow>,
}

#[tracing::instrument(skip(pool))]
async fn get_saga(
    State(pool): State<PgPool>,
    ProblemPath(id): ProblemPath<Uuid>,
) -> Result<ProblemJson<SagaDetail>, ApiError> {
    let row = store::find(&pool, id)
        .await?
        .ok_or(ApiError::NotFound(id))?;
    let timeline = store::timeline(&pool, row.saga_id).await?;
    Ok(ProblemJson(SagaDetail {
        summary: SagaSummary::from(&row),
        data: row.data,
        timeline,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
    /// The `next_after` of the previous page.
    after: Option<Uuid>,
}

#[derive(Debug, Serialize)]
pub struct SagaPage {
    pub items: Vec<SagaSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<Uuid>,
}

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
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    // One extra row tells whether there is a next page.
    let mut rows = store::list(&pool, state, q.after, limit + 1).await?;
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
