//! Saga-level checks that work on any step table (omicron's `sagas/test_helpers.rs` idea):
//! every action's reply delivered twice changes nothing the second time, and a failure
//! injected at every step unwinds exactly the completed steps, in reverse.

use crate::engine::{Decision, Issue, Reply, Saga, SagaDefinition, SagaState, Status};

fn ok<K>(kind: K) -> Reply<K> {
    Reply { kind, reason: None }
}

/// Apply a reply and check it was applied.
pub fn apply<S: Saga>(def: &SagaDefinition<S>, state: &SagaState, kind: S::ReplyKind) -> Decision {
    let d = def.on_reply(state, &ok(kind));
    assert!(d.applied, "{kind:?} should apply in {state:?}");
    d
}

/// Apply a reply twice; the second delivery must change nothing and send nothing.
pub fn apply_twice<S: Saga>(
    def: &SagaDefinition<S>,
    state: &SagaState,
    kind: S::ReplyKind,
) -> Decision {
    let first = apply(def, state, kind);
    let second = def.on_reply(&first.state, &ok(kind));
    assert!(
        !second.applied,
        "duplicate {kind:?} was applied again in {:?}",
        first.state
    );
    assert_eq!(
        second.state, first.state,
        "duplicate {kind:?} changed the state"
    );
    assert!(
        second.issue.is_empty(),
        "duplicate {kind:?} sent {:?}",
        second.issue
    );
    first
}

/// The state of a saga whose first `n` steps succeeded (every reply delivered twice).
pub fn run_first_steps<S: Saga>(def: &SagaDefinition<S>, n: usize) -> SagaState {
    let (mut state, issue) = def.start();
    assert_eq!(issue, vec![Issue::Action(0)]);
    for i in 0..n {
        assert_eq!(state.status, Status::Running);
        assert_eq!(state.step, Some(i));
        assert_eq!(
            def.pending(&state),
            vec![Issue::Action(i)],
            "retry re-sends the action"
        );
        let d = apply_twice(def, &state, def.steps[i].succeeded_on);
        if i + 1 < def.steps.len() {
            assert_eq!(d.issue, vec![Issue::Action(i + 1)]);
        }
        state = d.state;
    }
    state
}

/// Every step's success reply, each delivered twice, leads to `Completed`.
pub fn assert_happy_path_idempotent<S: Saga>(def: &SagaDefinition<S>) {
    let state = run_first_steps(def, def.steps.len());
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.completed, (0..def.steps.len()).collect::<Vec<_>>());
    assert!(def.pending(&state).is_empty());
}

/// For every step and every failure reply of it: the saga undoes exactly the steps that
/// completed before, latest first, each undo re-sendable until acked (acks delivered twice),
/// then sends the abort notice with the reason, and ends `Aborted`. Returns, per injected
/// failure, the undos issued, for the caller to compare with its table.
pub fn assert_failures_unwind<S: Saga>(def: &SagaDefinition<S>) -> Vec<(usize, Vec<usize>)> {
    let mut seen = Vec::new();
    for (i, step) in def.steps.iter().enumerate() {
        for &failure in step.failed_on {
            let before = run_first_steps(def, i);
            let reason = format!("injected failure at {}", step.name);
            let mut d = def.on_reply(
                &before,
                &Reply {
                    kind: failure,
                    reason: Some(reason.clone()),
                },
            );
            assert!(d.applied);
            let dup = def.on_reply(&d.state, &ok(failure));
            assert!(
                !dup.applied && dup.issue.is_empty(),
                "duplicate failure applied"
            );
            assert_eq!(d.state.failure_reason.as_deref(), Some(reason.as_str()));

            let expected: Vec<usize> = (0..i)
                .rev()
                .filter(|&j| def.steps[j].undo.is_some())
                .collect();
            let mut undone = Vec::new();
            while let [Issue::Undo(j)] = d.issue[..] {
                assert_eq!(d.state.status, Status::Compensating);
                // Retrying the undo before its ack sends the same undo again.
                assert_eq!(def.pending(&d.state), vec![Issue::Undo(j)]);
                // A late success reply of an earlier step is ignored while compensating.
                let stale = def.on_reply(&d.state, &ok(def.steps[j].succeeded_on));
                assert!(!stale.applied);
                undone.push(j);
                let ack = def.steps[j].undo.as_ref().unwrap().acked_by;
                d = apply_twice(def, &d.state, ack);
            }
            assert_eq!(
                undone, expected,
                "failure at step {} must undo exactly {expected:?}",
                step.name
            );
            assert_eq!(d.issue, vec![Issue::Abort]);
            assert_eq!(d.state.status, Status::Aborting);
            assert_eq!(def.pending(&d.state), vec![Issue::Abort]);
            let end = apply_twice(def, &d.state, def.abort.acked_by);
            assert_eq!(end.state.status, Status::Aborted);
            assert!(end.issue.is_empty());
            assert!(def.pending(&end.state).is_empty());
            seen.push((i, undone));
        }
    }
    seen
}
