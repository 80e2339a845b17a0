//! The `sagas` and `saga_transitions` tables: the only place saga state lives.

use chrono::{DateTime, Utc};
use saga_contracts::{MessageId, OrderId, SagaId};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::engine::{SagaDefinition, SagaState, Status};
use crate::sagas::order_saga::{ORDER_SAGA, OrderSaga, OrderSagaData};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A row the code cannot interpret (unknown state or step): a bug or a manual edit.
    #[error("saga {saga_id}: {problem}")]
    Corrupt { saga_id: Uuid, problem: String },
}

/// One row of `sagas`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SagaRow {
    pub saga_id: Uuid,
    pub saga_type: String,
    pub order_id: Uuid,
    pub state: String,
    pub current_step: Option<String>,
    pub completed_steps: Vec<String>,
    pub data: serde_json::Value,
    pub failure_reason: Option<String>,
    pub version: i64,
    pub cause_message_id: Uuid,
    pub correlation_id: Uuid,
    pub attempts: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub saga_deadline_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub step_started_at: DateTime<Utc>,
    /// `deadline_at` has passed (by the database's clock, the one that set it).
    pub deadline_passed: bool,
}

const SAGA_COLUMNS: &str = "saga_id, saga_type, order_id, state, current_step, completed_steps, \
     data, failure_reason, version, cause_message_id, correlation_id, attempts, next_retry_at, \
     created_at, updated_at, finished_at, saga_deadline_at, deadline_at, step_started_at, \
     COALESCE(deadline_at <= now(), false) AS deadline_passed";

impl SagaRow {
    pub fn saga_id(&self) -> SagaId {
        SagaId::from_uuid(self.saga_id)
    }

    pub fn order_id(&self) -> OrderId {
        OrderId::from_uuid(self.order_id)
    }

    fn corrupt(&self, problem: String) -> StoreError {
        StoreError::Corrupt {
            saga_id: self.saga_id,
            problem,
        }
    }

    /// The engine's view of this row.
    pub fn engine_state(&self) -> Result<SagaState, StoreError> {
        let def: &SagaDefinition<OrderSaga> = &ORDER_SAGA;
        let status: Status = self
            .state
            .parse()
            .map_err(|e| self.corrupt(format!("{e}")))?;
        let index = |name: &str| {
            def.step_index(name)
                .ok_or_else(|| self.corrupt(format!("unknown step {name:?}")))
        };
        Ok(SagaState {
            status,
            step: self.current_step.as_deref().map(index).transpose()?,
            completed: self
                .completed_steps
                .iter()
                .map(|s| index(s))
                .collect::<Result<_, _>>()?,
            failure_reason: self.failure_reason.clone(),
        })
    }

    pub fn order_data(&self) -> Result<OrderSagaData, StoreError> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| self.corrupt(format!("data does not match OrderSagaData: {e}")))
    }
}

/// A saga to insert.
pub struct NewSaga<'a> {
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub state: &'a SagaState,
    pub data: &'a OrderSagaData,
    pub cause: MessageId,
    pub correlation_id: Uuid,
    /// When its first command counts as unanswered.
    pub retry_after_secs: f64,
    /// The first step's deadline, and the saga's (seconds from now; `None`: none).
    pub step_deadline_secs: Option<f64>,
    pub saga_deadline_secs: Option<f64>,
}

/// Insert a new saga and its first transition (`started`, with the commands it issues) in one
/// statement; `None`, and nothing written, when a saga already exists for the order
/// (OrderPlaced seen before).
pub async fn insert_saga(
    conn: &mut PgConnection,
    new: NewSaga<'_>,
    started: NewTransition<'_>,
) -> Result<Option<SagaRow>, StoreError> {
    let NewSaga {
        saga_id,
        order_id,
        state,
        data,
        cause,
        correlation_id,
        retry_after_secs,
        step_deadline_secs,
        saga_deadline_secs,
    } = new;
    let data = serde_json::to_value(data).map_err(|e| StoreError::Corrupt {
        saga_id: saga_id.into_uuid(),
        problem: format!("cannot serialize data: {e}"),
    })?;
    let commands = started.commands_json()?;
    let sql = format!(
        "WITH inserted AS ( \
             INSERT INTO sagas (saga_id, saga_type, order_id, state, current_step, \
                 completed_steps, data, cause_message_id, correlation_id, next_retry_at, \
                 saga_deadline_at, deadline_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10), \
                 now() + make_interval(secs => $12), \
                 LEAST(now() + make_interval(secs => $11), now() + make_interval(secs => $12))) \
             ON CONFLICT (order_id) DO NOTHING RETURNING {SAGA_COLUMNS}), \
         timeline AS ( \
             INSERT INTO saga_transitions (saga_id, seq, outcome, from_state, to_state, \
                 from_step, to_step, caused_by_message_id, caused_by_type, commands, detail) \
             SELECT saga_id, 1, $13, NULL, $4, NULL, $5, $14, $15, $16, $17 FROM inserted) \
         SELECT * FROM inserted"
    );
    let row = sqlx::query_as::<_, SagaRow>(&sql)
        .bind(saga_id.into_uuid())
        .bind(ORDER_SAGA.name)
        .bind(order_id.into_uuid())
        .bind(state.status.as_str())
        .bind(state.step.map(|i| ORDER_SAGA.step_name(i)))
        .bind(step_names(state))
        .bind(data)
        .bind(cause.into_uuid())
        .bind(correlation_id)
        .bind(retry_after_secs)
        .bind(step_deadline_secs)
        .bind(saga_deadline_secs)
        .bind(started.outcome)
        .bind(started.caused_by_message_id)
        .bind(started.caused_by_type)
        .bind(commands)
        .bind(started.detail)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row)
}

fn step_names(state: &SagaState) -> Vec<String> {
    state
        .completed
        .iter()
        .map(|&i| ORDER_SAGA.step_name(i).to_owned())
        .collect()
}

/// Lock the saga of an order for the rest of the transaction.
pub async fn lock_by_order(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<SagaRow>, StoreError> {
    let sql = format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE order_id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(order_id.into_uuid())
        .fetch_optional(&mut *conn)
        .await?)
}

/// Lock and read the sagas of several orders at once, in order id order (so concurrent
/// batches queue behind each other instead of deadlocking): what a consumer batch of replies
/// reads with one statement instead of one per reply.
pub async fn lock_many_by_order(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE"
    );
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(order_ids)
        .fetch_all(&mut *conn)
        .await?)
}

/// Write the state the engine decided, resetting the retry clock, and append its transition
/// to the timeline, in one statement (a data-modifying CTE: one round trip instead of two
/// on the orchestrator's hottest path). `step_deadline_secs` is the deadline of the step the
/// saga now runs (ignored unless running); the saga deadline still caps it.
#[allow(clippy::too_many_arguments)]
pub async fn update_saga(
    conn: &mut PgConnection,
    row: &SagaRow,
    state: &SagaState,
    data: &OrderSagaData,
    cause: MessageId,
    retry_after_secs: f64,
    step_deadline_secs: Option<f64>,
    transition: NewTransition<'_>,
) -> Result<(), StoreError> {
    let data = serde_json::to_value(data).map_err(|e| row.corrupt(e.to_string()))?;
    let commands = transition.commands_json()?;
    let step_changed = state.status.as_str() != row.state
        || state.step.map(|i| ORDER_SAGA.step_name(i)) != row.current_step.as_deref();
    sqlx::query(
        "WITH updated AS ( \
             UPDATE sagas SET state = $2, current_step = $3, completed_steps = $4, data = $5, \
                 failure_reason = $6, version = version + 1, cause_message_id = $7, attempts = 0, \
                 next_retry_at = CASE WHEN $8 THEN now() + make_interval(secs => $9) END, \
                 deadline_at = CASE WHEN $2 = 'running' AND ($10::float8 IS NOT NULL \
                         OR saga_deadline_at IS NOT NULL) \
                     THEN LEAST(now() + make_interval(secs => $10), saga_deadline_at) END, \
                 step_started_at = CASE WHEN $12 THEN now() ELSE step_started_at END, \
                 updated_at = now(), finished_at = CASE WHEN $11 THEN now() END \
             WHERE saga_id = $1 RETURNING saga_id) \
         INSERT INTO saga_transitions (saga_id, seq, outcome, from_state, to_state, from_step, \
             to_step, caused_by_message_id, caused_by_type, commands, detail) \
         SELECT u.saga_id, \
             COALESCE((SELECT MAX(seq) FROM saga_transitions WHERE saga_id = $1), 0) + 1, \
             $13, $14, $2, $15, $3, $16, $17, $18, $19 \
         FROM updated u",
    )
    .bind(row.saga_id)
    .bind(state.status.as_str())
    .bind(state.step.map(|i| ORDER_SAGA.step_name(i)))
    .bind(step_names(state))
    .bind(data)
    .bind(state.failure_reason.as_deref())
    .bind(cause.into_uuid())
    .bind(state.status.is_waiting())
    .bind(retry_after_secs)
    .bind(step_deadline_secs)
    .bind(state.status.is_terminal())
    .bind(step_changed)
    .bind(transition.outcome)
    .bind(transition.from.map(|s| s.status.as_str()))
    .bind(transition.from.and_then(step_of))
    .bind(transition.caused_by_message_id)
    .bind(transition.caused_by_type)
    .bind(commands)
    .bind(transition.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn step_of(s: &SagaState) -> Option<&'static str> {
    s.step.map(|i| ORDER_SAGA.step_name(i))
}

/// Sagas whose pending command is due for a re-send or whose deadline passed, locked; other
/// instances skip them (so a deadline fires once however many orchestrators run).
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE next_retry_at <= now() OR deadline_at <= now() \
         ORDER BY LEAST(next_retry_at, deadline_at) LIMIT $1 FOR UPDATE SKIP LOCKED"
    );
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?)
}

/// Count a re-send and push the next one back.
pub async fn record_retry(
    conn: &mut PgConnection,
    saga_id: Uuid,
    next_after_secs: f64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sagas SET attempts = attempts + 1, \
             next_retry_at = now() + make_interval(secs => $2), updated_at = now() \
         WHERE saga_id = $1",
    )
    .bind(saga_id)
    .bind(next_after_secs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A command as recorded in the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IssuedCommand {
    #[serde(rename = "type")]
    pub type_name: String,
    pub message_id: Uuid,
    pub step: String,
    /// action | undo | abort
    pub kind: String,
}

/// One row of `saga_transitions`, to insert.
pub struct NewTransition<'a> {
    pub saga_id: Uuid,
    pub outcome: &'a str,
    pub from: Option<&'a SagaState>,
    pub to: &'a SagaState,
    pub caused_by_message_id: Option<Uuid>,
    pub caused_by_type: &'a str,
    pub commands: &'a [IssuedCommand],
    pub detail: Option<&'a str>,
}

impl NewTransition<'_> {
    fn commands_json(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(self.commands).map_err(|e| StoreError::Corrupt {
            saga_id: self.saga_id,
            problem: e.to_string(),
        })
    }
}

/// Append to the saga's timeline. Called under the saga's row lock, so `max(seq) + 1` is safe.
pub async fn insert_transition(
    conn: &mut PgConnection,
    t: NewTransition<'_>,
) -> Result<(), StoreError> {
    let step = step_of;
    let commands = t.commands_json()?;
    sqlx::query(
        "INSERT INTO saga_transitions (saga_id, seq, outcome, from_state, to_state, from_step, \
             to_step, caused_by_message_id, caused_by_type, commands, detail) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         FROM saga_transitions WHERE saga_id = $1",
    )
    .bind(t.saga_id)
    .bind(t.outcome)
    .bind(t.from.map(|s| s.status.as_str()))
    .bind(t.to.status.as_str())
    .bind(t.from.and_then(step))
    .bind(step(t.to))
    .bind(t.caused_by_message_id)
    .bind(t.caused_by_type)
    .bind(commands)
    .bind(t.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One row of `saga_transitions`, as read for the API.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TransitionRow {
    pub seq: i32,
    pub outcome: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub from_step: Option<String>,
    pub to_step: Option<String>,
    pub caused_by_message_id: Option<Uuid>,
    pub caused_by_type: String,
    #[schema(value_type = Vec<Object>)]
    pub commands: serde_json::Value,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// A saga by its saga id or its order id (both UUIDv7, so they cannot collide in practice).
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<SagaRow>, StoreError> {
    let sql = format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = $1 OR order_id = $1");
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub async fn timeline(pool: &PgPool, saga_id: Uuid) -> Result<Vec<TransitionRow>, StoreError> {
    Ok(sqlx::query_as::<_, TransitionRow>(
        "SELECT seq, outcome, from_state, to_state, from_step, to_step, caused_by_message_id, \
             caused_by_type, commands, detail, at \
         FROM saga_transitions WHERE saga_id = $1 ORDER BY seq",
    )
    .bind(saga_id)
    .fetch_all(pool)
    .await?)
}

/// A page of sagas in creation order (saga ids are UUIDv7), optionally of one state, and
/// optionally only the stuck ones: not finished, and at the same step for at least
/// `stuck_for_secs`.
pub async fn list(
    pool: &PgPool,
    state: Option<Status>,
    stuck_for_secs: Option<f64>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas \
         WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid IS NULL OR saga_id > $2) \
           AND ($4::float8 IS NULL OR (finished_at IS NULL \
                AND step_started_at <= now() - make_interval(secs => $4))) \
         ORDER BY saga_id LIMIT $3"
    );
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(state.map(Status::as_str))
        .bind(after)
        .bind(limit)
        .bind(stuck_for_secs)
        .fetch_all(pool)
        .await?)
}

/// How many sagas are in each state (for the gauge).
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM sagas GROUP BY state")
            .fetch_all(pool)
            .await?,
    )
}

/// Lock a saga by saga id or order id (operator actions).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<SagaRow>, StoreError> {
    let sql =
        format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = $1 OR order_id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Why a saga stopped and waits for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentCause {
    /// The participant answered that it cannot carry out an undo (or the abort notice).
    UndoRefused,
    /// The pending command was re-sent `saga.max_attempts` times without an answer.
    AttemptsExhausted,
    /// The participant dead-lettered the pending command.
    DeadLettered,
    /// The orchestrator could not process the row (unreadable state or data).
    ProcessingError,
}

impl IncidentCause {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentCause::UndoRefused => "undo_refused",
            IncidentCause::AttemptsExhausted => "attempts_exhausted",
            IncidentCause::DeadLettered => "dead_lettered",
            IncidentCause::ProcessingError => "processing_error",
        }
    }
}

/// An incident to open.
pub struct NewIncident<'a> {
    pub saga_id: Uuid,
    pub cause: IncidentCause,
    /// The state to resume from (`None`: the row could not be read).
    pub state_before: Option<&'a str>,
    pub step: Option<&'a str>,
    pub command: Option<&'a str>,
    pub error: &'a str,
    pub attempts: i32,
    pub dead_letter: Option<serde_json::Value>,
}

/// Put the saga in `incident` (nothing re-sent, no deadline) and record why. Touches only
/// plain columns, so it works on a row the engine cannot read. A saga that already has an
/// open incident keeps it (the unique index), and `false` is returned.
pub async fn open_incident(
    conn: &mut PgConnection,
    i: NewIncident<'_>,
) -> Result<bool, StoreError> {
    let opened = sqlx::query(
        "INSERT INTO saga_incidents (incident_id, saga_id, cause, state_before, step, command, \
             error, attempts, dead_letter) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (saga_id) WHERE resolved_at IS NULL DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(i.saga_id)
    .bind(i.cause.as_str())
    .bind(i.state_before)
    .bind(i.step)
    .bind(i.command)
    .bind(i.error)
    .bind(i.attempts)
    .bind(i.dead_letter)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    sqlx::query(
        "UPDATE sagas SET state = 'incident', next_retry_at = NULL, deadline_at = NULL, \
             version = version + 1, updated_at = now() WHERE saga_id = $1",
    )
    .bind(i.saga_id)
    .execute(&mut *conn)
    .await?;
    Ok(opened)
}

/// One row of `saga_incidents`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct IncidentRow {
    pub incident_id: Uuid,
    pub cause: String,
    pub state_before: Option<String>,
    pub step: Option<String>,
    pub command: Option<String>,
    pub error: String,
    pub attempts: i32,
    #[schema(value_type = Option<Object>)]
    pub dead_letter: Option<serde_json::Value>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    pub resolution_reason: Option<String>,
}

const INCIDENT_COLUMNS: &str = "incident_id, cause, state_before, step, command, error, attempts, \
     dead_letter, opened_at, resolved_at, resolution, resolution_reason";

/// Whether the dead letter at `topic`/`partition`/`offset` already opened an incident of the
/// saga (the dead-letter topic is read at least once).
pub async fn has_dead_letter_incident(
    conn: &mut PgConnection,
    saga_id: Uuid,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM saga_incidents WHERE saga_id = $1 \
             AND dead_letter->>'topic' = $2 AND (dead_letter->>'partition')::int = $3 \
             AND (dead_letter->>'offset')::bigint = $4)",
    )
    .bind(saga_id)
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .fetch_one(&mut *conn)
    .await?)
}

/// The saga's open incident, if any.
pub async fn open_incident_of(
    conn: &mut PgConnection,
    saga_id: Uuid,
) -> Result<Option<IncidentRow>, StoreError> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM saga_incidents WHERE saga_id = $1 AND resolved_at IS NULL"
    );
    Ok(sqlx::query_as::<_, IncidentRow>(&sql)
        .bind(saga_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The saga's latest incident (open or resolved), for the API.
pub async fn latest_incident(
    pool: &PgPool,
    saga_id: Uuid,
) -> Result<Option<IncidentRow>, StoreError> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM saga_incidents WHERE saga_id = $1 \
         ORDER BY opened_at DESC LIMIT 1"
    );
    Ok(sqlx::query_as::<_, IncidentRow>(&sql)
        .bind(saga_id)
        .fetch_optional(pool)
        .await?)
}

/// Close an incident with the operator's action and reason.
pub async fn resolve_incident(
    conn: &mut PgConnection,
    incident_id: Uuid,
    resolution: &str,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE saga_incidents SET resolved_at = now(), resolution = $2, resolution_reason = $3 \
         WHERE incident_id = $1",
    )
    .bind(incident_id)
    .bind(resolution)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Append a transition for a row the engine may not be able to read (incident on a corrupt
/// row): states as stored text.
pub async fn insert_raw_transition(
    conn: &mut PgConnection,
    row: &SagaRow,
    outcome: &str,
    to_state: &str,
    caused_by_type: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO saga_transitions (saga_id, seq, outcome, from_state, to_state, from_step, \
             to_step, caused_by_type, detail) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $5, $6, $7 \
         FROM saga_transitions WHERE saga_id = $1",
    )
    .bind(row.saga_id)
    .bind(outcome)
    .bind(&row.state)
    .bind(to_state)
    .bind(&row.current_step)
    .bind(caused_by_type)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Open incidents, for the gauge.
pub async fn count_open_incidents(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM saga_incidents WHERE resolved_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// Age in seconds of the oldest pending command per step (the abort notice counts as
/// `reject_order`), over the sagas still waiting.
pub async fn oldest_pending_by_step(pool: &PgPool) -> Result<Vec<(String, f64)>, StoreError> {
    Ok(sqlx::query_as::<_, (String, f64)>(
        "SELECT COALESCE(current_step, 'reject_order'), \
             EXTRACT(EPOCH FROM now() - min(step_started_at))::float8 \
         FROM sagas WHERE state IN ('running', 'compensating', 'aborting') GROUP BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// Compact the timelines of sagas finished more than `retention_secs` ago: keep the first
/// (`started`) and the last transition, delete the ones between. The saga row keeps its
/// outcome and failure reason. Returns how many transitions went.
pub async fn compact_timelines(pool: &PgPool, retention_secs: f64) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM saga_transitions t USING sagas s \
         WHERE t.saga_id = s.saga_id AND s.finished_at IS NOT NULL \
           AND s.finished_at < now() - make_interval(secs => $1) \
           AND t.seq > 1 \
           AND t.seq < (SELECT max(seq) FROM saga_transitions m WHERE m.saga_id = t.saga_id)",
    )
    .bind(retention_secs)
    .execute(pool)
    .await?
    .rows_affected())
}
