//! Persistence and messaging around the engine: each input is handled inside the caller's
//! transaction (the consumer runtime's, which also holds the inbox row): lock the saga row,
//! apply the state machine, append the transition, enqueue the commands through the outbox.

use std::time::Duration;

use saga_contracts::{Metadata, OrderPlaced, SagaId, Timestamp};
use saga_outbox::{Outbox, OutboxError};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::engine::{Issue, SagaState, Status};
use crate::sagas::order_saga::{IncomingReply, ORDER_SAGA, OrderSagaData};
use crate::store::{self, IssuedCommand, NewSaga, NewTransition, SagaRow, StoreError};

/// `[saga]` section: when a command counts as unanswered and how re-sends back off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagaConfig {
    /// A command without an answer after this long is sent again.
    pub retry_timeout_ms: u64,
    /// Upper bound of the exponential backoff between re-sends.
    pub retry_max_backoff_ms: u64,
    /// How often the retry task looks for due sagas (and refreshes the state gauge).
    pub retry_interval_ms: u64,
    /// Most sagas re-sent per transaction.
    pub retry_batch: i64,
    /// Run the periodic retry task (tests call `retry_due_once` themselves).
    pub retry_task: bool,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            retry_timeout_ms: 30_000,
            retry_max_backoff_ms: 300_000,
            retry_interval_ms: 1_000,
            retry_batch: 100,
            retry_task: true,
        }
    }
}

impl SagaConfig {
    /// Delay before re-send number `attempt + 1`: timeout * 2^attempt, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .retry_timeout_ms
            .saturating_mul(1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX))
            .min(self.retry_max_backoff_ms.max(self.retry_timeout_ms));
        Duration::from_millis(ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl SagaError {
    pub fn is_transient(&self) -> bool {
        match self {
            SagaError::Store(StoreError::Database(_)) => true,
            SagaError::Store(StoreError::Corrupt { .. }) => false,
            SagaError::Outbox(e) => e.is_transient(),
        }
    }
}

/// What handling an input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Started(SagaId),
    /// OrderPlaced for an order that already has a saga.
    AlreadyStarted(SagaId),
    Applied {
        saga_id: SagaId,
        status: Status,
    },
    /// Recorded in the timeline as ignored: not what the saga waits for.
    Ignored(SagaId),
    /// A reply about an order without a saga.
    UnknownOrder,
}

#[derive(Clone)]
pub struct SagaRunner {
    outbox: Outbox,
    config: SagaConfig,
}

impl SagaRunner {
    pub fn new(outbox: Outbox, config: SagaConfig) -> Self {
        SagaRunner { outbox, config }
    }

    pub fn config(&self) -> &SagaConfig {
        &self.config
    }

    fn first_timeout_secs(&self) -> f64 {
        self.config.backoff(0).as_secs_f64()
    }

    /// Start the saga of a placed order; a second OrderPlaced for the order changes nothing.
    #[tracing::instrument(skip_all, fields(order_id = %placed.meta.order_id))]
    pub async fn start(
        &self,
        tx: &mut PgConnection,
        placed: &OrderPlaced,
    ) -> Result<Handled, SagaError> {
        let order_id = placed.meta.order_id;
        let saga_id = SagaId::new();
        let data = OrderSagaData::from_placed(placed);
        let (state, issues) = ORDER_SAGA.start();
        let inserted = store::insert_saga(
            tx,
            NewSaga {
                saga_id,
                order_id,
                state: &state,
                data: &data,
                cause: placed.meta.message_id,
                correlation_id: placed.meta.correlation_id,
                retry_after_secs: self.first_timeout_secs(),
            },
        )
        .await?;
        let Some(row) = inserted else {
            let existing = store::lock_by_order(tx, order_id).await?;
            let existing = existing.map(|r| r.saga_id()).unwrap_or(saga_id);
            tracing::info!(saga_id = %existing, "saga already started for this order");
            return Ok(Handled::AlreadyStarted(existing));
        };
        // The commands are caused by OrderPlaced itself (`send` derives their metadata from it).
        let cause = placed.meta.clone().with_saga(saga_id);
        let commands = self.send(tx, &data, &state, &issues, &cause).await?;
        store::insert_transition(
            tx,
            NewTransition {
                saga_id: row.saga_id,
                outcome: "started",
                from: None,
                to: &state,
                caused_by_message_id: Some(placed.meta.message_id.into_uuid()),
                caused_by_type: "OrderPlaced",
                commands: &commands,
                detail: None,
            },
        )
        .await?;
        metrics::counter!("sagas_started_total").increment(1);
        tracing::info!(%saga_id, "saga started");
        Ok(Handled::Started(saga_id))
    }

    /// Advance the saga of `reply.meta.order_id` by one reply.
    #[tracing::instrument(skip_all, fields(order_id = %reply.meta.order_id, reply = reply.type_name))]
    pub async fn on_reply(
        &self,
        tx: &mut PgConnection,
        reply: &IncomingReply,
    ) -> Result<Handled, SagaError> {
        let Some(row) = store::lock_by_order(tx, reply.meta.order_id).await? else {
            tracing::warn!("reply for an order without a saga; ignored");
            return Ok(Handled::UnknownOrder);
        };
        let saga_id = row.saga_id();
        let before = row.engine_state()?;
        let decision = ORDER_SAGA.on_reply(&before, &reply.reply);
        let caused_by_message_id = Some(reply.meta.message_id.into_uuid());
        if !decision.applied {
            tracing::info!(%saga_id, state = %before.status, "reply does not match the saga's step; ignored");
            store::insert_transition(
                tx,
                NewTransition {
                    saga_id: row.saga_id,
                    outcome: "ignored",
                    from: Some(&before),
                    to: &before,
                    caused_by_message_id,
                    caused_by_type: reply.type_name,
                    commands: &[],
                    detail: None,
                },
            )
            .await?;
            return Ok(Handled::Ignored(saga_id));
        }
        let mut data = row.order_data()?;
        if let Some(fact) = reply.fact {
            data.record(fact);
        }
        let after = decision.state;
        let cause = cause_of(&row, reply.meta.message_id.into_uuid());
        let commands = self
            .send(tx, &data, &after, &decision.issue, &cause)
            .await?;
        store::update_saga(
            tx,
            &row,
            &after,
            &data,
            reply.meta.message_id,
            self.first_timeout_secs(),
        )
        .await?;
        let detail = (after.failure_reason != before.failure_reason)
            .then_some(after.failure_reason.as_deref())
            .flatten();
        store::insert_transition(
            tx,
            NewTransition {
                saga_id: row.saga_id,
                outcome: "applied",
                from: Some(&before),
                to: &after,
                caused_by_message_id,
                caused_by_type: reply.type_name,
                commands: &commands,
                detail,
            },
        )
        .await?;
        self.observe(&row, &before, &after, &decision.issue);
        tracing::info!(%saga_id, from = %before.status, to = %after.status, "saga advanced");
        Ok(Handled::Applied {
            saga_id,
            status: after.status,
        })
    }

    /// Re-send the pending command of every saga whose answer is overdue, once. Returns how
    /// many sagas were re-sent. Sagas locked by another instance are skipped.
    pub async fn retry_due_once(&self, pool: &PgPool) -> Result<usize, SagaError> {
        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let due = store::lock_due(&mut tx, self.config.retry_batch).await?;
        for row in &due {
            let span =
                tracing::info_span!("retry", order_id = %row.order_id, saga_id = %row.saga_id);
            self.retry_one(&mut tx, row).instrument(span).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(due.len())
    }

    async fn retry_one(&self, tx: &mut PgConnection, row: &SagaRow) -> Result<(), SagaError> {
        let state = row.engine_state()?;
        let issues = ORDER_SAGA.pending(&state);
        // Same causation as the original send, new message id: the participant's inbox does
        // not drop it, and its own idempotency (by order id) makes the effect happen once.
        let cause = cause_of(row, row.cause_message_id);
        let data = row.order_data()?;
        let commands = self.send(tx, &data, &state, &issues, &cause).await?;
        let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        store::record_retry(tx, row.saga_id, self.config.backoff(attempt).as_secs_f64()).await?;
        let detail = format!("re-send {attempt}");
        store::insert_transition(
            tx,
            NewTransition {
                saga_id: row.saga_id,
                outcome: "retried",
                from: Some(&state),
                to: &state,
                caused_by_message_id: Some(row.cause_message_id),
                caused_by_type: "retry",
                commands: &commands,
                detail: Some(&detail),
            },
        )
        .await?;
        for issue in &issues {
            metrics::counter!("saga_command_resends_total", "command" => ORDER_SAGA.issue_name(*issue))
                .increment(1);
        }
        tracing::warn!(attempt, state = %state.status, "no answer in time; command re-sent");
        Ok(())
    }

    /// Build and enqueue the commands for `issues`, each with a fresh message id.
    async fn send(
        &self,
        tx: &mut PgConnection,
        data: &OrderSagaData,
        state: &SagaState,
        issues: &[Issue],
        cause: &Metadata,
    ) -> Result<Vec<IssuedCommand>, SagaError> {
        let mut sent = Vec::with_capacity(issues.len());
        for &issue in issues {
            let meta = Metadata::caused_by(cause);
            let command = ORDER_SAGA.build(issue, data, state.failure_reason.as_deref(), meta);
            command.send(&self.outbox, tx).await?;
            let (step, kind) = match issue {
                Issue::Action(i) => (ORDER_SAGA.step_name(i), "action"),
                Issue::Undo(j) => (ORDER_SAGA.step_name(j), "undo"),
                Issue::Abort => (ORDER_SAGA.abort.name, "abort"),
            };
            sent.push(IssuedCommand {
                type_name: command.type_name().to_owned(),
                message_id: command.meta().message_id.into_uuid(),
                step: step.to_owned(),
                kind: kind.to_owned(),
            });
        }
        Ok(sent)
    }

    fn observe(&self, row: &SagaRow, before: &SagaState, after: &SagaState, issues: &[Issue]) {
        for issue in issues {
            if let Issue::Undo(j) = issue {
                metrics::counter!("saga_compensations_total", "step" => ORDER_SAGA.step_name(*j))
                    .increment(1);
            }
        }
        if after.status.is_terminal() && !before.status.is_terminal() {
            let secs = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64();
            metrics::histogram!("saga_duration_seconds", "outcome" => after.status.as_str())
                .record(secs);
        }
    }

    /// Refresh the `sagas` gauge (by state) from the table, so it is right across restarts
    /// and across instances.
    pub async fn refresh_gauge(&self, pool: &PgPool) -> Result<(), SagaError> {
        let counts = store::count_by_state(pool).await?;
        for status in Status::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("sagas", "state" => status.as_str()).set(n as f64);
        }
        Ok(())
    }
}

/// The metadata of the message that caused the saga's current position, rebuilt from the row
/// (saga id and correlation id come from the saga, not from whatever the reply carried).
fn cause_of(row: &SagaRow, message_id: Uuid) -> Metadata {
    Metadata {
        message_id: message_id.into(),
        order_id: row.order_id(),
        saga_id: Some(row.saga_id()),
        causation_id: None,
        correlation_id: row.correlation_id,
        occurred_at: Timestamp::now(),
    }
}
