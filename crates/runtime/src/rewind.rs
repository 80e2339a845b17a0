//! Reprocessing over HTTP, behind the admin token: `POST /admin/rewind` rewinds one of the
//! service's consumer groups to an offset or a point in time (what `cargo xtask rewind` does
//! from the command line, and what the console's lag page calls).
//!
//! A rewind needs the group stopped: a running member would commit its own position over
//! the rewound one. The command line can only check that the service's process is down; here
//! the service does it itself: the consumer's task stops the consumer (in-flight batches
//! finish and commit), [`saga_consumer::rewind::rewind`] moves the committed offsets (and, for
//! a projection with `reapply`, clears the range's inbox rows), and the consumer starts again
//! from the rewound offsets. The inbox drops every message the group already applied, so a
//! rewind of a group with effects applies nothing twice. A dry run only plans and changes
//! nothing, the consumer keeps running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use saga_consumer::rewind::{self, HandlerKind, Plan, Request, RewindError, Target};
use saga_kafka::KafkaConfig;
use saga_service_kit::Problem;
use saga_service_kit::auth::AdminAuth;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// A rewind for a consumer's task to carry out between a stop and a start.
pub(crate) struct Job {
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Result<Plan, RewindError>>,
}

/// One consumer of the service, as a rewind finds it.
struct Slot {
    /// The logical topic name (without the deployment's prefix).
    topic: &'static str,
    kind: HandlerKind,
    jobs: mpsc::Sender<Job>,
}

/// The service's consumers by group id, filled by `Runtime::add_consumer`.
#[derive(Clone, Default)]
pub(crate) struct Groups(Arc<Mutex<BTreeMap<String, Slot>>>);

impl Groups {
    /// Registers a consumer; its task receives the rewinds on the returned channel.
    pub(crate) fn register(
        &self,
        group: &str,
        topic: &'static str,
        kind: HandlerKind,
    ) -> mpsc::Receiver<Job> {
        let (jobs, rx) = mpsc::channel(1);
        if let Ok(mut groups) = self.0.lock() {
            groups.insert(group.to_owned(), Slot { topic, kind, jobs });
        }
        rx
    }

    fn find(&self, group: &str) -> Option<(&'static str, HandlerKind, mpsc::Sender<Job>)> {
        let groups = self.0.lock().ok()?;
        groups.get(group).map(|s| (s.topic, s.kind, s.jobs.clone()))
    }

    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct RewindState {
    groups: Groups,
    kafka: KafkaConfig,
    pool: PgPool,
}

/// The admin route, already behind `admin`.
pub(crate) fn router(
    groups: Groups,
    kafka: KafkaConfig,
    pool: PgPool,
    admin: &AdminAuth,
) -> Router {
    admin.protect(
        Router::new()
            .route("/admin/rewind", post(rewind_group))
            .with_state(RewindState {
                groups,
                kafka,
                pool,
            }),
    )
}

/// `POST /admin/rewind`: exactly one of `to_offset` and `to_time`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewindBody {
    group: String,
    /// The topic the group reads (logical name); optional, checked when given.
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    to_offset: Option<i64>,
    #[serde(default)]
    to_time: Option<DateTime<Utc>>,
    /// Plan only: nothing changes and the consumer keeps running.
    #[serde(default)]
    dry_run: bool,
    /// Clear the range's inbox entries so the messages are applied again (projections only).
    #[serde(default)]
    reapply: bool,
}

#[derive(Debug, Serialize)]
struct RewindAnswer {
    dry_run: bool,
    handler: HandlerKind,
    /// Messages delivered again.
    reprocessed: i64,
    plan: Plan,
    /// The plan as `cargo xtask rewind` prints it.
    summary: String,
}

async fn rewind_group(
    State(state): State<RewindState>,
    Json(body): Json<RewindBody>,
) -> Result<Json<RewindAnswer>, Problem> {
    let Some((topic, kind, jobs)) = state.groups.find(&body.group) else {
        return Err(Problem::new(StatusCode::NOT_FOUND).with_detail(format!(
            "this service runs no consumer group {:?}; its groups: {}",
            body.group,
            state.groups.names().join(", ")
        )));
    };
    if let Some(asked) = &body.topic
        && asked != topic
    {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY).with_detail(format!(
                "consumer group {} reads {topic}, not {asked}",
                body.group
            )),
        );
    }
    let target = match (body.to_offset, body.to_time) {
        (Some(offset), None) => Target::Offset(offset),
        (None, Some(time)) => Target::Time(time),
        _ => {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail("give exactly one of to_offset and to_time"));
        }
    };
    let request = Request {
        group: body.group.clone(),
        topic: state.kafka.topic(topic),
        target,
        handler: kind,
        reapply: body.reapply,
    };
    if body.reapply && kind != HandlerKind::Projection {
        return Err(refused(RewindError::ReapplyRefused { group: body.group }));
    }
    let plan = if body.dry_run {
        rewind::plan(&state.kafka, Some(&state.pool), &request)
            .await
            .map_err(refused)?
    } else {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the consumer is not running (the service is stopping)")
        };
        jobs.send(Job { request, reply })
            .await
            .map_err(|_| stopped())?;
        let plan = answer.await.map_err(|_| stopped())?.map_err(refused)?;
        tracing::warn!(group = %plan.group, topic = %plan.topic, reprocessed = plan.reprocessed(), reapply = plan.reapply, "consumer group rewound by an operator");
        plan
    };
    Ok(Json(RewindAnswer {
        dry_run: body.dry_run,
        handler: kind,
        reprocessed: plan.reprocessed(),
        summary: plan.to_string(),
        plan,
    }))
}

fn refused(error: RewindError) -> Problem {
    let status = match &error {
        RewindError::ReapplyRefused { .. } | RewindError::GroupActive { .. } => {
            StatusCode::CONFLICT
        }
        RewindError::NegativeOffset(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RewindError::NoSuchTopic(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    Problem::new(status).with_detail(error.to_string())
}
