//! Persistence and messaging around the engine: each input is handled inside the caller's
//! transaction (the consumer runtime's, which also holds the inbox row): lock the saga row,
//! apply the state machine, append the transition, enqueue the commands through the outbox.

use std::collections::BTreeMap;
use std::time::Duration;

use saga_contracts::{Metadata, OrderPlaced, SagaId, Timestamp};
use saga_outbox::{Outbox, OutboxError, Tx};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::engine::{Decision, Issue, SagaState, Status};
use crate::sagas::order_saga::{IncomingReply, ORDER_SAGA, OrderSagaData, SagaCommand};
use crate::store::{
    self, IncidentCause, IssuedCommand, NewIncident, NewSaga, NewTransition, SagaRow, StoreError,
};

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
    /// Read the dead-letter topic and open an incident for a dead-lettered pending command
    /// (`dead_letters`); needs the consumers on.
    pub watch_dead_letters: bool,
    /// Per-step deadline overrides in ms, by step name (`0`: no deadline); steps not named
    /// keep the step table's default.
    pub step_deadlines_ms: BTreeMap<String, u64>,
    /// The whole saga's deadline for its forward steps, from its start (`0`: none).
    pub saga_deadline_ms: u64,
    /// Re-sends of one pending command before the saga opens an incident.
    pub max_attempts: u32,
    /// Timelines of sagas finished longer ago than this are compacted (first and last
    /// transition kept).
    pub timeline_retention_secs: u64,
    /// How often the retry task compacts timelines.
    pub timeline_compaction_interval_secs: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            retry_timeout_ms: 30_000,
            retry_max_backoff_ms: 300_000,
            retry_interval_ms: 1_000,
            retry_batch: 100,
            retry_task: true,
            watch_dead_letters: true,
            step_deadlines_ms: BTreeMap::new(),
            saga_deadline_ms: 600_000,
            max_attempts: 10,
            timeline_retention_secs: 30 * 24 * 3600,
            timeline_compaction_interval_secs: 3600,
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

    /// The deadline of step `i`: the config's override, else the step table's.
    pub fn step_deadline(&self, i: usize) -> Option<Duration> {
        match self.step_deadlines_ms.get(ORDER_SAGA.step_name(i)) {
            Some(0) => None,
            Some(&ms) => Some(Duration::from_millis(ms)),
            None => ORDER_SAGA.step_deadline(i),
        }
    }

    /// Reject a config that names a step the saga does not have.
    pub fn validate(&self) -> Result<(), String> {
        for name in self.step_deadlines_ms.keys() {
            if ORDER_SAGA.step_index(name).is_none() {
                let known: Vec<_> = ORDER_SAGA.steps.iter().map(|s| s.name).collect();
                return Err(format!(
                    "saga.step_deadlines_ms names unknown step {name:?} (steps: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// An operator's action on a saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// Re-send the pending command now with a fresh attempts budget (also resolves an
    /// incident, resuming where the saga stood).
    Retry,
    /// Mark the pending undo (or the abort notice) as done by hand and go on unwinding.
    Skip,
    /// Give up on a running saga now: undo its current and completed steps, reject the order.
    Abort,
}

impl OperatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Retry => "retry",
            OperatorAction::Skip => "skip",
            OperatorAction::Abort => "abort",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("no saga with saga id or order id {0}")]
    NotFound(Uuid),
    /// The action does not apply to the saga as it stands.
    #[error("{0}")]
    NotApplicable(String),
    #[error(transparent)]
    Saga(#[from] SagaError),
}

impl From<StoreError> for OperateError {
    fn from(e: StoreError) -> Self {
        OperateError::Saga(SagaError::Store(e))
    }
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
    pub async fn start(&self, tx: &mut Tx<'_>, placed: &OrderPlaced) -> Result<Handled, SagaError> {
        let order_id = placed.meta.order_id;
        let saga_id = SagaId::new();
        let data = OrderSagaData::from_placed(placed);
        let (state, issues) = ORDER_SAGA.start();
        // The commands are caused by OrderPlaced itself (their metadata derives from it). Built
        // first, so the saga and its first transition are one statement; enqueued only if the
        // saga is new.
        let cause = placed.meta.clone().with_saga(saga_id);
        let commands = self.build(&data, &state, &issues, &cause);
        let issued: Vec<IssuedCommand> = commands.iter().map(|(_, i)| i.clone()).collect();
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
                step_deadline_secs: self.step_deadline_secs(&state),
                saga_deadline_secs: (self.config.saga_deadline_ms > 0)
                    .then(|| self.config.saga_deadline_ms as f64 / 1000.0),
            },
            NewTransition {
                saga_id: saga_id.into_uuid(),
                outcome: "started",
                from: None,
                to: &state,
                caused_by_message_id: Some(placed.meta.message_id.into_uuid()),
                caused_by_type: "OrderPlaced",
                commands: &issued,
                detail: None,
            },
        )
        .await?;
        if inserted.is_none() {
            let existing = store::lock_by_order(tx, order_id).await?;
            let existing = existing.map(|r| r.saga_id()).unwrap_or(saga_id);
            tracing::info!(saga_id = %existing, "saga already started for this order");
            return Ok(Handled::AlreadyStarted(existing));
        }
        for (command, _) in &commands {
            command.send(&self.outbox, tx).await?;
        }
        metrics::counter!("sagas_started_total").increment(1);
        tracing::info!(%saga_id, "saga started");
        Ok(Handled::Started(saga_id))
    }

    /// Lock and read, with one statement, the sagas a batch of replies is about, and keep them
    /// in `tx` for [`SagaRunner::on_reply`] to take (each row once: a second reply for the same
    /// saga in the batch reads the row as the first left it).
    pub async fn preload(
        &self,
        tx: &mut Tx<'_>,
        mut order_ids: Vec<Uuid>,
    ) -> Result<(), SagaError> {
        order_ids.sort_unstable();
        order_ids.dedup();
        if order_ids.is_empty() {
            return Ok(());
        }
        let rows = store::lock_many_by_order(tx, &order_ids).await?;
        tx.keep(Preloaded(
            rows.into_iter().map(|r| (r.order_id, r)).collect(),
        ));
        Ok(())
    }

    /// Advance the saga of `reply.meta.order_id` by one reply.
    #[tracing::instrument(skip_all, fields(order_id = %reply.meta.order_id, reply = reply.type_name))]
    pub async fn on_reply(
        &self,
        tx: &mut Tx<'_>,
        reply: &IncomingReply,
    ) -> Result<Handled, SagaError> {
        let order_id = reply.meta.order_id.into_uuid();
        let preloaded = tx.kept::<Preloaded>().and_then(|p| p.0.remove(&order_id));
        let row = match preloaded {
            Some(row) => Some(row),
            None => store::lock_by_order(tx, reply.meta.order_id).await?,
        };
        let Some(row) = row else {
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
        let status = self
            .apply(
                tx,
                &row,
                &before,
                decision,
                &data,
                Cause {
                    message_id: reply.meta.message_id.into_uuid(),
                    type_name: reply.type_name,
                    outcome: "applied",
                    detail: None,
                    dead_letter: None,
                },
                IncidentCause::UndoRefused,
            )
            .await?;
        Ok(Handled::Applied { saga_id, status })
    }

    /// Write an applied decision: send its commands, update the row, append the transition,
    /// and open the incident when the decision is one. Returns the new status.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        row: &SagaRow,
        before: &SagaState,
        decision: Decision,
        data: &OrderSagaData,
        cause: Cause<'_>,
        incident_cause: IncidentCause,
    ) -> Result<Status, SagaError> {
        let after = decision.state;
        let dead_letter = cause.dead_letter.clone();
        let meta = cause_of(row, cause.message_id);
        let commands = self.send(tx, data, &after, &decision.issue, &meta).await?;
        let outcome = if decision.incident.is_some() {
            "incident"
        } else {
            cause.outcome
        };
        let reason_changed = (after.failure_reason != before.failure_reason)
            .then_some(after.failure_reason.as_deref())
            .flatten();
        let detail = decision
            .incident
            .as_deref()
            .or(cause.detail)
            .or(reason_changed);
        store::update_saga(
            tx,
            row,
            &after,
            data,
            cause.message_id.into(),
            self.first_timeout_secs(),
            self.step_deadline_secs(&after),
            NewTransition {
                saga_id: row.saga_id,
                outcome,
                from: Some(before),
                to: &after,
                caused_by_message_id: Some(cause.message_id),
                caused_by_type: cause.type_name,
                commands: &commands,
                detail,
            },
        )
        .await?;
        if let Some(error) = &decision.incident {
            let pending = ORDER_SAGA.pending(before);
            store::open_incident(
                tx,
                NewIncident {
                    saga_id: row.saga_id,
                    cause: incident_cause,
                    state_before: Some(before.status.as_str()),
                    step: Some(pending_step(before)),
                    command: pending.first().map(|&i| command_type(i, data)),
                    error,
                    attempts: row.attempts,
                    dead_letter,
                },
            )
            .await?;
            metrics::counter!("saga_incidents_total", "cause" => incident_cause.as_str())
                .increment(1);
            tracing::error!(saga_id = %row.saga_id, %error, "saga needs an operator: incident opened");
        }
        self.observe(row, before, &after, &decision.issue);
        tracing::info!(saga_id = %row.saga_id, from = %before.status, to = %after.status, "saga advanced");
        Ok(after.status)
    }

    fn step_deadline_secs(&self, state: &SagaState) -> Option<f64> {
        match (state.status, state.step) {
            (Status::Running, Some(i)) => self.config.step_deadline(i).map(|d| d.as_secs_f64()),
            _ => None,
        }
    }

    /// Handle every saga that is due, once: fire a passed deadline, re-send an unanswered
    /// command, or open an incident when the attempts budget is spent. Returns how many sagas
    /// were handled. Sagas locked by another instance are skipped. Each saga runs in its own
    /// savepoint: one that fails for a reason other than the database (an unreadable row)
    /// becomes an incident and the others go on.
    pub async fn retry_due_once(&self, pool: &PgPool) -> Result<usize, SagaError> {
        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let due = store::lock_due(&mut tx, self.config.retry_batch).await?;
        for row in &due {
            let span = tracing::info_span!("due", order_id = %row.order_id, saga_id = %row.saga_id);
            let mut sp = sqlx::Acquire::begin(&mut tx)
                .await
                .map_err(StoreError::from)?;
            match self
                .handle_due(&mut Tx::direct(&mut sp), row)
                .instrument(span.clone())
                .await
            {
                Ok(()) => sp.commit().await.map_err(StoreError::from)?,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    sp.rollback().await.map_err(StoreError::from)?;
                    let _entered = span.enter();
                    tracing::error!(error = %e, "saga row cannot be processed; incident opened");
                    self.incident_for_broken_row(&mut tx, row, &e.to_string())
                        .await?;
                }
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(due.len())
    }

    /// Put a row that cannot be processed aside, touching only plain columns.
    async fn incident_for_broken_row(
        &self,
        tx: &mut PgConnection,
        row: &SagaRow,
        error: &str,
    ) -> Result<(), SagaError> {
        let state_before = row
            .engine_state()
            .ok()
            .filter(|s| s.status.is_waiting())
            .map(|s| s.status.as_str());
        store::open_incident(
            tx,
            NewIncident {
                saga_id: row.saga_id,
                cause: IncidentCause::ProcessingError,
                state_before,
                step: row.current_step.as_deref(),
                command: None,
                error,
                attempts: row.attempts,
                dead_letter: None,
            },
        )
        .await?;
        store::insert_raw_transition(tx, row, "incident", "incident", "retry", error).await?;
        metrics::counter!("saga_incidents_total", "cause" => IncidentCause::ProcessingError.as_str())
            .increment(1);
        Ok(())
    }

    async fn handle_due(&self, tx: &mut Tx<'_>, row: &SagaRow) -> Result<(), SagaError> {
        let state = row.engine_state()?;
        let data = row.order_data()?;
        if row.deadline_passed && state.status == Status::Running {
            return self.time_out(tx, row, &state, &data).await;
        }
        if !state.status.is_waiting() {
            return Ok(());
        }
        if u32::try_from(row.attempts).unwrap_or(0) >= self.config.max_attempts {
            let error = format!(
                "no answer after {} re-sends of {}",
                row.attempts,
                ORDER_SAGA
                    .pending(&state)
                    .first()
                    .map_or("the pending command", |&i| command_type(i, &data))
            );
            let decision = Decision {
                state: SagaState {
                    status: Status::Incident,
                    ..state.clone()
                },
                issue: Vec::new(),
                applied: true,
                incident: Some(error),
            };
            self.apply(
                tx,
                row,
                &state,
                decision,
                &data,
                Cause {
                    message_id: row.cause_message_id,
                    type_name: "retry",
                    outcome: "incident",
                    detail: None,
                    dead_letter: None,
                },
                IncidentCause::AttemptsExhausted,
            )
            .await?;
            return Ok(());
        }
        self.retry_one(tx, row, &state, &data).await
    }

    /// A participant dead-lettered `message_type` for the order: when it is the command the
    /// saga waits on, the saga stops in `incident` pointing at the dead letter.
    pub(crate) async fn dead_lettered_command(
        &self,
        tx: &mut Tx<'_>,
        order_id: saga_contracts::OrderId,
        message_type: &str,
        notice: &crate::dead_letters::DeadLetterNotice,
    ) -> Result<crate::dead_letters::DeadLetterOutcome, SagaError> {
        use crate::dead_letters::DeadLetterOutcome;
        let Some(row) = store::lock_by_order(tx, order_id).await? else {
            return Ok(DeadLetterOutcome::NotPending);
        };
        if store::has_dead_letter_incident(
            tx,
            row.saga_id,
            &notice.topic,
            notice.partition,
            notice.offset,
        )
        .await?
        {
            return Ok(DeadLetterOutcome::AlreadyRecorded);
        }
        let state = row.engine_state()?;
        let data = row.order_data()?;
        let pending = ORDER_SAGA.pending(&state);
        if !state.status.is_waiting()
            || !pending
                .iter()
                .any(|&i| command_type(i, &data) == message_type)
        {
            tracing::info!(saga_id = %row.saga_id, %message_type, state = %state.status, "dead letter of a command the saga no longer waits on");
            return Ok(DeadLetterOutcome::NotPending);
        }
        let error = format!(
            "{message_type} dead-lettered by {} at {}/{}@{}: {}",
            notice.consumer_group.as_deref().unwrap_or("its consumer"),
            notice.topic,
            notice.partition,
            notice.offset,
            notice.error
        );
        let decision = Decision {
            state: SagaState {
                status: Status::Incident,
                ..state.clone()
            },
            issue: Vec::new(),
            applied: true,
            incident: Some(error),
        };
        self.apply(
            tx,
            &row,
            &state,
            decision,
            &data,
            Cause {
                message_id: row.cause_message_id,
                type_name: "dead_letter",
                outcome: "incident",
                detail: None,
                dead_letter: Some(notice.to_json()),
            },
            IncidentCause::DeadLettered,
        )
        .await?;
        Ok(DeadLetterOutcome::IncidentOpened)
    }

    /// The running step's deadline (or the saga's) passed: give up on the step.
    async fn time_out(
        &self,
        tx: &mut Tx<'_>,
        row: &SagaRow,
        state: &SagaState,
        data: &OrderSagaData,
    ) -> Result<(), SagaError> {
        let step = pending_step(state);
        let saga_deadline_passed = row
            .saga_deadline_at
            .zip(row.deadline_at)
            .is_some_and(|(saga, next)| saga <= next);
        let reason = if saga_deadline_passed {
            format!("saga deadline passed during step {step}")
        } else {
            let secs = state
                .step
                .and_then(|i| self.config.step_deadline(i))
                .map_or(0, |d| d.as_secs());
            format!("step {step} timed out (no answer within {secs}s)")
        };
        let decision = ORDER_SAGA.give_up(state, reason.clone());
        metrics::counter!("saga_step_timeouts_total", "step" => step).increment(1);
        tracing::warn!(%reason, "deadline passed; compensating");
        self.apply(
            tx,
            row,
            state,
            decision,
            data,
            Cause {
                message_id: row.cause_message_id,
                type_name: "deadline",
                outcome: "timed_out",
                detail: Some(&reason),
                dead_letter: None,
            },
            IncidentCause::ProcessingError,
        )
        .await?;
        Ok(())
    }

    async fn retry_one(
        &self,
        tx: &mut Tx<'_>,
        row: &SagaRow,
        state: &SagaState,
        data: &OrderSagaData,
    ) -> Result<(), SagaError> {
        let issues = ORDER_SAGA.pending(state);
        // Same causation as the original send, new message id: the participant's inbox does
        // not drop it, and its own idempotency (by order id) makes the effect happen once.
        let cause = cause_of(row, row.cause_message_id);
        let commands = self.send(tx, data, state, &issues, &cause).await?;
        let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        store::record_retry(tx, row.saga_id, self.config.backoff(attempt).as_secs_f64()).await?;
        let detail = format!("re-send {attempt}");
        store::insert_transition(
            tx,
            NewTransition {
                saga_id: row.saga_id,
                outcome: "retried",
                from: Some(state),
                to: state,
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

    /// An operator's action on the saga `id` (saga id or order id), with the reason recorded
    /// in the timeline. Returns the saga as it stands afterwards.
    #[tracing::instrument(skip(self, pool, reason))]
    pub async fn operate(
        &self,
        pool: &PgPool,
        id: Uuid,
        action: OperatorAction,
        reason: &str,
    ) -> Result<SagaRow, OperateError> {
        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let row = store::lock(&mut tx, id)
            .await?
            .ok_or(OperateError::NotFound(id))?;
        let incident = store::open_incident_of(&mut tx, row.saga_id).await?;
        let not_applicable = |why: String| {
            OperateError::NotApplicable(format!(
                "{} does not apply to saga {} in state {}: {why}",
                action.as_str(),
                row.saga_id,
                row.state
            ))
        };
        // The state to act on: the saga's own, or for an incident the one it stopped in.
        let mut state = row.engine_state().map_err(|e| {
            not_applicable(format!("the saga cannot be read ({e}); fix the row first"))
        })?;
        if state.status == Status::Incident {
            let before = incident
                .as_ref()
                .and_then(|i| i.state_before.as_deref())
                .and_then(|s| s.parse::<Status>().ok())
                .filter(|s| s.is_waiting())
                .ok_or_else(|| {
                    not_applicable("the incident does not say where the saga stood".into())
                })?;
            state.status = before;
        }
        let data = row
            .order_data()
            .map_err(|e| not_applicable(format!("the saga's data cannot be read ({e})")))?;
        let detail = format!("{}: {reason}", action.as_str());
        let type_name = match action {
            OperatorAction::Retry => "operator:retry",
            OperatorAction::Skip => "operator:skip",
            OperatorAction::Abort => "operator:abort",
        };
        let decision = match action {
            OperatorAction::Retry if state.status.is_waiting() => Decision {
                issue: ORDER_SAGA.pending(&state),
                state: state.clone(),
                applied: true,
                incident: None,
            },
            OperatorAction::Retry => {
                return Err(not_applicable("nothing is pending".into()));
            }
            OperatorAction::Skip => {
                let d = ORDER_SAGA.skip(&state);
                if !d.applied {
                    return Err(not_applicable(
                        "only a pending undo or abort notice can be skipped".into(),
                    ));
                }
                d
            }
            OperatorAction::Abort => {
                let d = ORDER_SAGA.give_up(&state, format!("aborted by operator: {reason}"));
                if !d.applied {
                    return Err(not_applicable("only a running saga can be aborted".into()));
                }
                d
            }
        };
        // The row as the engine saw it before: its stored state, for the transition.
        let from = SagaState {
            status: row.state.parse().unwrap_or(Status::Incident),
            ..state.clone()
        };
        self.apply(
            &mut Tx::direct(&mut tx),
            &row,
            &from,
            decision,
            &data,
            Cause {
                message_id: row.cause_message_id,
                type_name,
                outcome: "operator",
                detail: Some(&detail),
                dead_letter: None,
            },
            IncidentCause::ProcessingError,
        )
        .await?;
        if let Some(incident) = &incident {
            store::resolve_incident(&mut tx, incident.incident_id, action.as_str(), reason).await?;
        }
        let after = store::lock(&mut tx, row.saga_id)
            .await?
            .ok_or(OperateError::NotFound(id))?;
        tx.commit().await.map_err(StoreError::from)?;
        metrics::counter!("saga_operator_actions_total", "action" => action.as_str()).increment(1);
        tracing::warn!(action = action.as_str(), %reason, "operator action applied");
        Ok(after)
    }

    /// Compact the timelines of sagas finished longer ago than the retention.
    pub async fn compact_timelines_once(&self, pool: &PgPool) -> Result<u64, SagaError> {
        let n = store::compact_timelines(pool, self.config.timeline_retention_secs as f64).await?;
        if n > 0 {
            tracing::info!(transitions = n, "finished sagas' timelines compacted");
        }
        Ok(n)
    }

    /// Build and enqueue the commands for `issues`, each with a fresh message id.
    async fn send(
        &self,
        tx: &mut Tx<'_>,
        data: &OrderSagaData,
        state: &SagaState,
        issues: &[Issue],
        cause: &Metadata,
    ) -> Result<Vec<IssuedCommand>, SagaError> {
        let commands = self.build(data, state, issues, cause);
        let mut sent = Vec::with_capacity(commands.len());
        for (command, issued) in commands {
            command.send(&self.outbox, tx).await?;
            sent.push(issued);
        }
        Ok(sent)
    }

    /// The commands for `issues`, each with a fresh message id, and how the timeline records
    /// them.
    fn build(
        &self,
        data: &OrderSagaData,
        state: &SagaState,
        issues: &[Issue],
        cause: &Metadata,
    ) -> Vec<(SagaCommand, IssuedCommand)> {
        issues
            .iter()
            .map(|&issue| {
                let meta = Metadata::caused_by(cause);
                let command = ORDER_SAGA.build(issue, data, state.failure_reason.as_deref(), meta);
                let (step, kind) = match issue {
                    Issue::Action(i) => (ORDER_SAGA.step_name(i), "action"),
                    Issue::Undo(j) => (ORDER_SAGA.step_name(j), "undo"),
                    Issue::Abort => (ORDER_SAGA.abort.name, "abort"),
                };
                let issued = IssuedCommand {
                    type_name: command.type_name().to_owned(),
                    message_id: command.meta().message_id.into_uuid(),
                    step: step.to_owned(),
                    kind: kind.to_owned(),
                };
                (command, issued)
            })
            .collect()
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
        let open = store::count_open_incidents(pool).await?;
        metrics::gauge!("saga_open_incidents").set(open as f64);
        let ages = store::oldest_pending_by_step(pool).await?;
        let names = ORDER_SAGA
            .steps
            .iter()
            .map(|s| s.name)
            .chain([ORDER_SAGA.abort.name]);
        for name in names {
            let age = ages
                .iter()
                .find(|(s, _)| s == name)
                .map_or(0.0, |(_, a)| *a);
            metrics::gauge!("saga_oldest_pending_step_age_seconds", "step" => name).set(age);
        }
        Ok(())
    }
}

/// The metadata of the message that caused the saga's current position, rebuilt from the row
/// (saga id and correlation id come from the saga, not from whatever the reply carried).
/// Saga rows a batch locked and read up front, by order id (see [`SagaRunner::preload`]).
struct Preloaded(std::collections::HashMap<Uuid, SagaRow>);

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

/// What caused a transition written by [`SagaRunner::apply`].
struct Cause<'a> {
    /// The message id recorded as the cause (for a deadline, retry or operator action: the
    /// message that caused the current position).
    message_id: Uuid,
    type_name: &'a str,
    outcome: &'a str,
    detail: Option<&'a str>,
    /// The dead letter an incident refers to.
    dead_letter: Option<serde_json::Value>,
}

/// The step a saga waits on, by name (`reject_order` for the abort notice).
fn pending_step(state: &SagaState) -> &'static str {
    match (state.status, state.step) {
        (Status::Aborting, _) | (_, None) => ORDER_SAGA.abort.name,
        (_, Some(i)) => ORDER_SAGA.step_name(i),
    }
}

/// The message type an issue sends (ReserveStock, ..., RejectOrder), read off the command
/// the step table builds, so it cannot drift from the table.
fn command_type(issue: Issue, data: &OrderSagaData) -> &'static str {
    let meta = Metadata::first(saga_contracts::OrderId::new());
    ORDER_SAGA.build(issue, data, None, meta).type_name()
}
