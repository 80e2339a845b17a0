//! The engine on a table shaped unlike the order saga: a step without undo in the middle
//! and a step with two failure replies, so the helpers are checked on more than one shape.

use crate::engine::{Abort, Issue, Saga, SagaDefinition, Step, Undo};
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
            }),
        },
        Step {
            name: "b",
            action: |_, _| "B".into(),
            succeeded_on: K::BOk,
            failed_on: &[K::BFail],
            undo: None,
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
            }),
        },
        Step {
            name: "d",
            action: |_, _| "D".into(),
            succeeded_on: K::DOk,
            failed_on: &[],
            undo: None,
        },
    ],
    abort: Abort {
        name: "abort",
        command: |_, reason, _| format!("ABORT {reason}"),
        acked_by: K::Aborted,
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
