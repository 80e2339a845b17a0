//! The saga engine: a pure state machine that interprets any step table.
//!
//! `on_reply(definition, state, reply)` returns the next state and the commands to issue,
//! without I/O. Persistence (`crate::store`) and messaging (`crate::service`) wrap it, so the
//! saga-level tests can run every path of a table cheaply and exhaustively.
//!
//! Commands are returned as [`Issue`]s (which step, action or undo), not as messages: building
//! a message needs fresh metadata (a new message id), which the caller provides through
//! [`SagaDefinition::build`]. That keeps this module deterministic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The types one saga works with; implemented by a marker type per saga.
pub trait Saga: 'static {
    /// What the saga carries from start to end (customer, lines, amount, address...).
    type Data;
    /// The messages it sends.
    type Command;
    /// What distinguishes one reply from another, as the step table names them.
    type ReplyKind: Copy + PartialEq + fmt::Debug + 'static;
    /// Per-message context the commands are built with (message metadata); opaque here.
    type Ctx;
}

/// One row of a saga's step table.
pub struct Step<S: Saga> {
    /// Stable name, stored in the database and shown in the API.
    pub name: &'static str,
    /// Builds the step's command from the saga's data.
    pub action: fn(&S::Data, S::Ctx) -> S::Command,
    /// The reply that means the action succeeded.
    pub succeeded_on: S::ReplyKind,
    /// The replies that mean the action failed (nothing to undo for this step).
    pub failed_on: &'static [S::ReplyKind],
    /// How to undo the step once it has succeeded; `None` for a step that cannot be undone
    /// (it must then be the last one, or its completion is final).
    pub undo: Option<Undo<S>>,
    /// How long the action may go unanswered before the saga gives up on the step, sends its
    /// undo (the participant keeps a tombstone, so a late action is refused) and unwinds.
    /// `None`: no deadline (a step without an undo cannot be given up; it is re-sent until
    /// its attempts budget runs out). Overridable per step in config.
    pub deadline: Option<Duration>,
}

/// A compensating command and the reply that acknowledges it.
pub struct Undo<S: Saga> {
    pub name: &'static str,
    pub command: fn(&S::Data, S::Ctx) -> S::Command,
    pub acked_by: S::ReplyKind,
    /// Replies that say the participant cannot compensate: the saga opens an incident.
    pub refused_on: &'static [S::ReplyKind],
}

/// What a saga sends once every completed step has been undone, with the failure reason,
/// and the reply that acknowledges it (RejectOrder / OrderRejected for the order saga).
pub struct Abort<S: Saga> {
    pub name: &'static str,
    pub command: fn(&S::Data, &str, S::Ctx) -> S::Command,
    pub acked_by: S::ReplyKind,
    /// Replies that refuse the abort notice: the saga opens an incident.
    pub refused_on: &'static [S::ReplyKind],
}

/// A whole saga: the step table plus the abort notice.
pub struct SagaDefinition<S: Saga> {
    pub name: &'static str,
    pub steps: &'static [Step<S>],
    pub abort: Abort<S>,
}

/// A reply as the engine sees it: its kind, plus the reason when it reports a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<K> {
    pub kind: K,
    pub reason: Option<String>,
}

/// Where a saga stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting for the reply to the current step's action.
    Running,
    /// A step failed; waiting for the current step's undo ack.
    Compensating,
    /// Every completed step is undone; waiting for the abort notice's ack.
    Aborting,
    /// Every step succeeded (terminal).
    Completed,
    /// Compensated and the abort notice acknowledged (terminal).
    Aborted,
    /// Cannot go on by itself (an undo refused, attempts exhausted, a dead-lettered command,
    /// a row that fails to process): nothing is re-sent until an operator resolves it
    /// (terminal but open).
    Incident,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Compensating,
        Status::Aborting,
        Status::Completed,
        Status::Aborted,
        Status::Incident,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Compensating => "compensating",
            Status::Aborting => "aborting",
            Status::Completed => "completed",
            Status::Aborted => "aborted",
            Status::Incident => "incident",
        }
    }

    /// Finished for good (an incident is not: it is open until resolved).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Aborted)
    }

    /// Waiting for an answer to a pending command (re-sent, deadlines apply).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            Status::Running | Status::Compensating | Status::Aborting
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown saga state {0:?} (expected one of running, compensating, aborting, completed, aborted, incident)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The engine's view of one saga instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaState {
    pub status: Status,
    /// The step whose reply (running) or undo ack (compensating) is awaited.
    pub step: Option<usize>,
    /// Steps whose action succeeded and that are not undone, in table order.
    pub completed: Vec<usize>,
    pub failure_reason: Option<String>,
}

/// A command the engine wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issue {
    Action(usize),
    Undo(usize),
    Abort,
}

/// The result of feeding a reply to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: SagaState,
    pub issue: Vec<Issue>,
    /// False when the reply did not match what the saga waits for (late duplicate, stale):
    /// then `state` is unchanged and `issue` is empty.
    pub applied: bool,
    /// Set when the saga enters `incident`: why (the participant's refusal).
    pub incident: Option<String>,
}

impl<S: Saga> SagaDefinition<S> {
    /// The state of a new saga and its first command.
    pub fn start(&self) -> (SagaState, Vec<Issue>) {
        let state = SagaState {
            status: Status::Running,
            step: Some(0),
            completed: Vec::new(),
            failure_reason: None,
        };
        if self.steps.is_empty() {
            return (
                SagaState {
                    status: Status::Completed,
                    step: None,
                    ..state
                },
                Vec::new(),
            );
        }
        (state, vec![Issue::Action(0)])
    }

    /// Apply one reply. Pure: same input, same output.
    pub fn on_reply(&self, state: &SagaState, reply: &Reply<S::ReplyKind>) -> Decision {
        let ignored = || Decision {
            state: state.clone(),
            issue: Vec::new(),
            applied: false,
            incident: None,
        };
        match (state.status, state.step) {
            (Status::Running, Some(i)) => {
                let step = &self.steps[i];
                if reply.kind == step.succeeded_on {
                    let mut next = state.clone();
                    next.completed.push(i);
                    if i + 1 < self.steps.len() {
                        next.step = Some(i + 1);
                        return applied(next, vec![Issue::Action(i + 1)]);
                    }
                    next.status = Status::Completed;
                    next.step = None;
                    applied(next, Vec::new())
                } else if step.failed_on.contains(&reply.kind) {
                    let reason = reply
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("step {} failed ({:?})", step.name, reply.kind));
                    let mut next = state.clone();
                    next.failure_reason = Some(reason);
                    self.unwind(next)
                } else {
                    ignored()
                }
            }
            (Status::Compensating, Some(j)) => match &self.steps[j].undo {
                Some(undo) if reply.kind == undo.acked_by => {
                    let mut next = state.clone();
                    next.completed.retain(|&c| c != j);
                    self.unwind(next)
                }
                Some(undo) if undo.refused_on.contains(&reply.kind) => {
                    let why = reply
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("{} refused", undo.name));
                    incident(state, why)
                }
                _ => ignored(),
            },
            (Status::Aborting, _) if reply.kind == self.abort.acked_by => {
                let mut next = state.clone();
                next.status = Status::Aborted;
                next.step = None;
                applied(next, Vec::new())
            }
            (Status::Aborting, _) if self.abort.refused_on.contains(&reply.kind) => {
                let why = reply
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{} refused", self.abort.name));
                incident(state, why)
            }
            _ => ignored(),
        }
    }

    /// Give up on the running step (its deadline or the saga's passed, or an operator aborts):
    /// the step's own undo is sent too, because its action may still be applied late (the
    /// participant's tombstone then refuses it), and the completed steps are unwound.
    /// Ignored unless the saga is running.
    pub fn give_up(&self, state: &SagaState, reason: String) -> Decision {
        let (Status::Running, Some(i)) = (state.status, state.step) else {
            return Decision {
                state: state.clone(),
                issue: Vec::new(),
                applied: false,
                incident: None,
            };
        };
        let mut next = state.clone();
        next.failure_reason = Some(reason);
        if self.steps[i].undo.is_some() && !next.completed.contains(&i) {
            next.completed.push(i);
        }
        self.unwind(next)
    }

    /// Treat the pending undo (or abort notice) as done by hand: the operator's `skip`.
    /// Ignored unless the saga is compensating or aborting.
    pub fn skip(&self, state: &SagaState) -> Decision {
        match (state.status, state.step) {
            (Status::Compensating, Some(j)) => {
                let mut next = state.clone();
                next.completed.retain(|&c| c != j);
                self.unwind(next)
            }
            (Status::Aborting, _) => {
                let mut next = state.clone();
                next.status = Status::Aborted;
                next.step = None;
                applied(next, Vec::new())
            }
            _ => Decision {
                state: state.clone(),
                issue: Vec::new(),
                applied: false,
                incident: None,
            },
        }
    }

    /// The deadline of step `i` as the table declares it.
    pub fn step_deadline(&self, i: usize) -> Option<Duration> {
        self.steps[i].deadline
    }

    /// Undo the latest completed step that has an undo, or send the abort notice when none
    /// is left.
    fn unwind(&self, mut next: SagaState) -> Decision {
        let to_undo = next
            .completed
            .iter()
            .rev()
            .copied()
            .find(|&c| self.steps[c].undo.is_some());
        match to_undo {
            Some(j) => {
                next.status = Status::Compensating;
                next.step = Some(j);
                applied(next, vec![Issue::Undo(j)])
            }
            None => {
                next.status = Status::Aborting;
                next.step = None;
                applied(next, vec![Issue::Abort])
            }
        }
    }

    /// The command(s) a saga in `state` is waiting on an answer to; what a retry re-sends.
    pub fn pending(&self, state: &SagaState) -> Vec<Issue> {
        match (state.status, state.step) {
            (Status::Running, Some(i)) => vec![Issue::Action(i)],
            (Status::Compensating, Some(j)) => vec![Issue::Undo(j)],
            (Status::Aborting, _) => vec![Issue::Abort],
            _ => Vec::new(),
        }
    }

    /// Build the message for an issue.
    pub fn build(
        &self,
        issue: Issue,
        data: &S::Data,
        failure_reason: Option<&str>,
        ctx: S::Ctx,
    ) -> S::Command {
        match issue {
            Issue::Action(i) => (self.steps[i].action)(data, ctx),
            Issue::Undo(j) => {
                let undo = self.steps[j]
                    .undo
                    .as_ref()
                    .expect("the engine only undoes steps that have an undo");
                (undo.command)(data, ctx)
            }
            Issue::Abort => {
                (self.abort.command)(data, failure_reason.unwrap_or("saga failed"), ctx)
            }
        }
    }

    /// A readable name for an issue: the step's name, its undo's name, or the abort's.
    pub fn issue_name(&self, issue: Issue) -> &'static str {
        match issue {
            Issue::Action(i) => self.steps[i].name,
            Issue::Undo(j) => self.steps[j].undo.as_ref().map_or("undo", |u| u.name),
            Issue::Abort => self.abort.name,
        }
    }

    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    pub fn step_name(&self, index: usize) -> &'static str {
        self.steps[index].name
    }
}

fn applied(state: SagaState, issue: Vec<Issue>) -> Decision {
    Decision {
        state,
        issue,
        applied: true,
        incident: None,
    }
}

/// Stop where the saga stands (step and completed steps kept, for a later retry or skip).
fn incident(state: &SagaState, why: String) -> Decision {
    let mut next = state.clone();
    next.status = Status::Incident;
    Decision {
        state: next,
        issue: Vec::new(),
        applied: true,
        incident: Some(why),
    }
}
