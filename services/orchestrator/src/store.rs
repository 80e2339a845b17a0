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
}

const SAGA_COLUMNS: &str = "saga_id, saga_type, order_id, state, current_step, completed_steps, \
     data, failure_reason, version, cause_message_id, correlation_id, attempts, next_retry_at, \
     created_at, updated_at, finished_at";

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
}

/// Insert a new saga; `None` when one already exists for the order (OrderPlaced seen before).
pub async fn insert_saga(
    conn: &mut PgConnection,
    new: NewSaga<'_>,
) -> Result<Option<SagaRow>, StoreError> {
    let NewSaga {
        saga_id,
        order_id,
        state,
        data,
        cause,
        correlation_id,
        retry_after_secs,
    } = new;
    let data = serde_json::to_value(data).map_err(|e| StoreError::Corrupt {
        saga_id: saga_id.into_uuid(),
        problem: format!("cannot serialize data: {e}"),
    })?;
    let sql = format!(
        "INSERT INTO sagas (saga_id, saga_type, order_id, state, current_step, completed_steps, \
             data, cause_message_id, correlation_id, next_retry_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10)) \
         ON CONFLICT (order_id) DO NOTHING RETURNING {SAGA_COLUMNS}"
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

/// Write the state the engine decided, resetting the retry clock.
pub async fn update_saga(
    conn: &mut PgConnection,
    row: &SagaRow,
    state: &SagaState,
    data: &OrderSagaData,
    cause: MessageId,
    retry_after_secs: f64,
) -> Result<(), StoreError> {
    let data = serde_json::to_value(data).map_err(|e| row.corrupt(e.to_string()))?;
    let terminal = state.status.is_terminal();
    sqlx::query(
        "UPDATE sagas SET state = $2, current_step = $3, completed_steps = $4, data = $5, \
             failure_reason = $6, version = version + 1, cause_message_id = $7, attempts = 0, \
             next_retry_at = CASE WHEN $8 THEN NULL ELSE now() + make_interval(secs => $9) END, \
             updated_at = now(), finished_at = CASE WHEN $8 THEN now() END \
         WHERE saga_id = $1",
    )
    .bind(row.saga_id)
    .bind(state.status.as_str())
    .bind(state.step.map(|i| ORDER_SAGA.step_name(i)))
    .bind(step_names(state))
    .bind(data)
    .bind(state.failure_reason.as_deref())
    .bind(cause.into_uuid())
    .bind(terminal)
    .bind(retry_after_secs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sagas whose pending command is due for a re-send, locked; others instances skip them.
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE next_retry_at <= now() \
         ORDER BY next_retry_at LIMIT $1 FOR UPDATE SKIP LOCKED"
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

/// Append to the saga's timeline. Called under the saga's row lock, so `max(seq) + 1` is safe.
pub async fn insert_transition(
    conn: &mut PgConnection,
    t: NewTransition<'_>,
) -> Result<(), StoreError> {
    let step = |s: &SagaState| s.step.map(|i| ORDER_SAGA.step_name(i));
    let commands = serde_json::to_value(t.commands).map_err(|e| StoreError::Corrupt {
        saga_id: t.saga_id,
        problem: e.to_string(),
    })?;
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
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TransitionRow {
    pub seq: i32,
    pub outcome: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub from_step: Option<String>,
    pub to_step: Option<String>,
    pub caused_by_message_id: Option<Uuid>,
    pub caused_by_type: String,
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

/// A page of sagas in creation order (saga ids are UUIDv7), optionally of one state.
pub async fn list(
    pool: &PgPool,
    state: Option<Status>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas \
         WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid IS NULL OR saga_id > $2) \
         ORDER BY saga_id LIMIT $3"
    );
    Ok(sqlx::query_as::<_, SagaRow>(&sql)
        .bind(state.map(Status::as_str))
        .bind(after)
        .bind(limit)
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
