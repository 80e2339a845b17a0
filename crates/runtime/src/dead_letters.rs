//! The dead letters of one service over HTTP, behind the admin token (docs/security.md):
//! `GET /admin/dead-letters` lists those its consumer groups gave up on, and
//! `POST /admin/dead-letters/{partition:offset}/replay` re-publishes one to its source topic
//! (the inbox skips it if it was applied meanwhile). Every service gets these routes from
//! [`crate::Runtime::run`]; `saga-dlq` (`cargo xtask dlq`) does the same for operators with
//! broker access.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use saga_consumer::dead_letters::{self, CONSUMER_GROUP, DeadLetter};
use saga_kafka::KafkaConfig;
use saga_service_kit::Problem;
use saga_service_kit::auth::AdminAuth;
use serde::Serialize;

#[derive(Clone)]
struct DeadLetters {
    kafka: KafkaConfig,
    /// The dead-letter topic's wire name.
    topic: String,
    /// The service's consumer group; its other groups are `<group>.<suffix>`
    /// (`orchestrator.order.events`, `shipping-service.order-events`).
    group: String,
}

impl DeadLetters {
    fn owns(&self, letter: &DeadLetter) -> bool {
        letter.header(CONSUMER_GROUP).is_some_and(|g| {
            g == self.group
                || g.strip_prefix(self.group.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, Problem> {
        let letters = dead_letters::list(&self.kafka, &self.topic)
            .await
            .map_err(|error| {
                tracing::error!(%error, "listing dead letters failed");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("the dead-letter topic could not be read")
            })?;
        Ok(letters.into_iter().filter(|l| self.owns(l)).collect())
    }
}

/// The admin routes, already behind `admin`.
pub(crate) fn router(
    kafka: KafkaConfig,
    topic: String,
    group: String,
    admin: &AdminAuth,
) -> Router {
    let state = DeadLetters {
        kafka,
        topic,
        group,
    };
    admin.protect(
        Router::new()
            .route("/admin/dead-letters", get(list))
            .route("/admin/dead-letters/{id}/replay", post(replay))
            .with_state(state),
    )
}

#[derive(Serialize)]
struct Listed {
    id: String,
    #[serde(flatten)]
    letter: DeadLetter,
}

async fn list(State(dl): State<DeadLetters>) -> Result<Json<Vec<Listed>>, Problem> {
    let letters = dl.list().await?;
    Ok(Json(
        letters
            .into_iter()
            .map(|letter| Listed {
                id: letter.id(),
                letter,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct Replayed {
    replayed: String,
    topic: String,
}

async fn replay(
    State(dl): State<DeadLetters>,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, Problem> {
    let letter = dl
        .list()
        .await?
        .into_iter()
        .find(|l| l.id() == id)
        .ok_or_else(|| {
            Problem::new(StatusCode::NOT_FOUND)
                .with_detail(format!("no dead letter {id} of this service"))
        })?;
    dead_letters::replay(&dl.kafka, &letter)
        .await
        .map_err(|error| {
            tracing::error!(%error, id, "replaying a dead letter failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the replay was not published")
        })?;
    let topic = letter.source_topic().unwrap_or_default().to_owned();
    tracing::info!(id, %topic, "dead letter replayed by an admin");
    Ok(Json(Replayed {
        replayed: id,
        topic,
    }))
}
