//! The engine on a table shaped unlike the order saga: a step without undo in the middle
//! and a step with two failure replies, so the helpers are checked on more than one shape.

use crate::engine::{Abort, Issue, Saga, SagaDefinition, Status, Step, Undo};
use crate::sagas::test_helpers::*;

struct Toy;
#[derive(Clone, Copy, Debug, PartialEq)]
enum K {
    AOk,
    AFail,
    AUndone,
    BOk,
    BFail,
    COk,
    CFail1,
    CFail2,
    CUndone,
    DOk,
    Aborted,
}
impl Saga for Toy {
    type Data = ();
    type Command = String;
    type ReplyKind = K;
    type Ctx = ();
}

static TOY: SagaDefinition<Toy> = SagaDefinition {
    name: "toy",
    steps: &[
        Step {
            name: "a",
            action: |_, _| "A".into(),
            succeeded_on: K::AOk,
            failed_on: &[K::AFail],
            undo: Some(Undo {
                name: "undo_a",
                command: |_, _| "UA".into(),
                acked_by: K::AUndone,
                refused_on: &[],
            }),
            deadline: Some(std::time::Duration::from_secs(5)),
        },
        Step {
            name: "b",
            action: |_, _| "B".into(),
            succeeded_on: K::BOk,
            failed_on: &[K::BFail],
            undo: None,
            deadline: None,
        },
        Step {
            name: "c",
            action: |_, _| "C".into(),
            succeeded_on: K::COk,
            failed_on: &[K::CFail1, K::CFail2],
            undo: Some(Undo {
                name: "undo_c",
                command: |_, _| "UC".into(),
                acked_by: K::CUndone,
                refused_on: &[K::CFail2],
            }),
            deadline: None,
        },
        Step {
            name: "d",
            action: |_, _| "D".into(),
            succeeded_on: K::DOk,
            failed_on: &[],
            undo: None,
            deadline: None,
        },
    ],
    abort: Abort {
        name: "abort",
        command: |_, reason, _| format!("ABORT {reason}"),
        acked_by: K::Aborted,
        refused_on: &[],
    },
};

#[test]
fn toy_happy_path_is_idempotent() {
    assert_happy_path_idempotent(&TOY);
}

#[test]
fn toy_failures_unwind_completed_steps_with_an_undo() {
    let seen = assert_failures_unwind(&TOY);
    assert_eq!(
        seen,
        vec![(0, vec![]), (1, vec![0]), (2, vec![0]), (2, vec![0])]
    );
}

#[test]
fn toy_abort_carries_the_reason() {
    let state = run_first_steps(&TOY, 1);
    let d = TOY.on_reply(
        &state,
        &crate::engine::Reply {
            kind: K::BFail,
            reason: Some("no".into()),
        },
    );
    assert_eq!(d.issue, vec![Issue::Undo(0)]);
    assert_eq!(TOY.build(Issue::Undo(0), &(), None, ()), "UA");
    let d = TOY.on_reply(
        &d.state,
        &crate::engine::Reply {
            kind: K::AUndone,
            reason: None,
        },
    );
    assert_eq!(d.issue, vec![Issue::Abort]);
    assert_eq!(
        TOY.build(Issue::Abort, &(), d.state.failure_reason.as_deref(), ()),
        "ABORT no"
    );
}

#[test]
fn toy_giving_up_on_a_running_step_undoes_it_and_the_completed_steps() {
    // Step a done, b (no undo) running: giving up undoes a only.
    let state = run_first_steps(&TOY, 1);
    let d = TOY.give_up(&state, "b timed out".into());
    assert!(d.applied);
    assert_eq!(d.issue, vec![Issue::Undo(0)]);
    assert_eq!(d.state.failure_reason.as_deref(), Some("b timed out"));
    // Steps a, b done, c running: c's own undo first (its action may land late), then a's.
    let state = run_first_steps(&TOY, 2);
    let d = TOY.give_up(&state, "c timed out".into());
    assert_eq!(d.issue, vec![Issue::Undo(2)]);
    let d = apply(&TOY, &d.state, K::CUndone);
    assert_eq!(d.issue, vec![Issue::Undo(0)]);
    let d = apply(&TOY, &d.state, K::AUndone);
    assert_eq!(d.issue, vec![Issue::Abort]);
    // Not running: nothing to give up.
    assert!(!TOY.give_up(&d.state, "late".into()).applied);
}

#[test]
fn toy_refused_undo_opens_an_incident_and_skip_goes_on() {
    let state = run_first_steps(&TOY, 2);
    let d = TOY.give_up(&state, "deadline".into());
    let refused = TOY.on_reply(
        &d.state,
        &crate::engine::Reply {
            kind: K::CFail2,
            reason: Some("cannot".into()),
        },
    );
    assert!(refused.applied);
    assert_eq!(refused.state.status, Status::Incident);
    assert_eq!(refused.state.step, Some(2));
    assert!(refused.issue.is_empty());
    assert_eq!(refused.incident.as_deref(), Some("cannot"));
    // The operator skips the undo (from the state before the incident).
    let skipped = TOY.skip(&d.state);
    assert_eq!(skipped.issue, vec![Issue::Undo(0)]);
    let aborting = apply(&TOY, &skipped.state, K::AUndone).state;
    let done = TOY.skip(&aborting);
    assert_eq!(done.state.status, Status::Aborted);
    assert!(
        !TOY.skip(&state).applied,
        "skip does not apply to a running saga"
    );
}
