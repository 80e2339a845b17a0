//! Sagas that cannot finish on their own, against real Postgres and the real registry:
//! step deadlines (fired once, across restarts and instances), incidents, operator actions,
//! failure isolation of the background work, timeline compaction.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_service::{OperatorAction, SagaConfig};
use saga_contracts::{
    InventoryCommand, InventoryCommandRefused, InventoryEvent, Metadata, OrderCommand, OrderEvent,
    PaymentCommand, PaymentEvent, TopicMessage,
};

use crate::harness::*;

/// Deadlines of a few ms for the payment step; re-sends far away so only the deadline fires.
fn fast_deadline() -> SagaConfig {
    SagaConfig {
        retry_timeout_ms: 600_000,
        step_deadlines_ms: BTreeMap::from([("charge_payment".to_owned(), 20)]),
        ..SagaConfig::default()
    }
}

/// Run the background round until `done` holds (the deadline is a few ms away), or fail.
async fn due_until(h: &Harness, mut done: impl AsyncFnMut(&Harness) -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        h.retry_due().await;
        if done(h).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not reached in 10 s"
        );
        tokio::task::yield_now().await;
    }
}

/// Place an order and answer ReserveStock: the saga then waits on charge_payment.
async fn saga_at_charge(h: &Harness) -> saga_contracts::OrderId {
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    placed.meta.order_id
}

async fn types_in_outbox(h: &Harness) -> Vec<String> {
    h.outbox()
        .await
        .into_iter()
        .map(|r| r.message_type)
        .collect()
}

#[tokio::test]
async fn a_step_that_never_answers_times_out_undoes_itself_and_the_completed_steps() {
    let h = Harness::new(fast_deadline()).await;
    let order_id = saga_at_charge(&h).await;
    let saga = h.saga(order_id).await;
    assert!(
        saga.deadline_at.is_some(),
        "running at charge_payment has a deadline"
    );

    due_until(&h, async |h| h.saga(order_id).await.state == "compensating").await;
    let saga = h.saga(order_id).await;
    assert_eq!(saga.current_step.as_deref(), Some("charge_payment"));
    let reason = saga.failure_reason.clone().unwrap();
    assert!(
        reason.contains("charge_payment") && reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(saga.deadline_at, None, "no deadline while compensating");
    // The timed-out step's own undo first: its action may still arrive late.
    let refund: PaymentCommand = h.decode(&h.last_command_row().await).await;
    assert!(
        matches!(refund, PaymentCommand::RefundPayment(_)),
        "{refund:?}"
    );
    h.payment_event(PaymentEvent::PaymentRefunded(payment_refunded(
        refund.meta(),
        saga_contracts::Money::new(0, saga_contracts::Currency::parse("EUR").unwrap()),
    )))
    .await;
    let release: InventoryCommand = h.decode(&h.last_command_row().await).await;
    assert!(
        matches!(release, InventoryCommand::ReleaseStock(_)),
        "{release:?}"
    );
    h.inventory_event(InventoryEvent::StockReleased(stock_released(
        release.meta(),
    )))
    .await;
    let reject: OrderCommand = h.decode(&h.last_command_row().await).await;
    let OrderCommand::RejectOrder(reject) = reject else {
        panic!("{reject:?}")
    };
    assert!(
        reject.reason.contains("charge_payment"),
        "{}",
        reject.reason
    );
    h.order_event(OrderEvent::OrderRejected(order_rejected(
        &reject.meta,
        &reject.reason,
    )))
    .await;
    assert_eq!(h.saga(order_id).await.state, "aborted");
    let timeline = h.timeline(h.saga(order_id).await.saga_id).await;
    assert_eq!(
        timeline.iter().filter(|t| t.outcome == "timed_out").count(),
        1
    );
}

#[tokio::test]
async fn a_deadline_that_passes_while_the_orchestrator_is_down_fires_once_after_restart() {
    let h = Harness::new(fast_deadline()).await;
    let order_id = saga_at_charge(&h).await;
    let deadline = h.saga(order_id).await.deadline_at.unwrap();
    // Down until the deadline has passed (by the database's clock).
    let h = h.restart().await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, bool>("SELECT now() <= $1")
        .bind(deadline)
        .fetch_one(&h.pool)
        .await
        .unwrap()
    {
        assert!(tokio::time::Instant::now() < until);
        tokio::task::yield_now().await;
    }
    // A second instance on the same database: both run their round at once.
    let other = h.second_instance().await;
    let (a, b) = tokio::join!(
        h.runner().retry_due_once(&h.pool),
        other.runner().retry_due_once(&other.pool)
    );
    a.unwrap();
    b.unwrap();
    h.retry_due().await;
    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "compensating");
    let timeline = h.timeline(saga.saga_id).await;
    assert_eq!(
        timeline.iter().filter(|t| t.outcome == "timed_out").count(),
        1,
        "{timeline:#?}"
    );
    let refunds = types_in_outbox(&h)
        .await
        .iter()
        .filter(|t| *t == "RefundPayment")
        .count();
    assert_eq!(refunds, 1);
}

/// Time out at charge_payment, then the payment service refuses the refund for good.
async fn saga_with_refused_undo(h: &Harness) -> saga_contracts::OrderId {
    let order_id = saga_at_charge(h).await;
    due_until(h, async |h| h.saga(order_id).await.state == "compensating").await;
    let refund = h.last_command().await;
    h.payment_event(PaymentEvent::PaymentCommandRefused(
        saga_contracts::PaymentCommandRefused {
            meta: Metadata::caused_by(&refund),
            command: "RefundPayment".into(),
            reason: "the amount overflows the account balance".into(),
        },
    ))
    .await;
    order_id
}

#[tokio::test]
async fn a_refused_undo_opens_an_incident_and_stops_resending_then_skip_ends_the_saga() {
    let h = Harness::new(SagaConfig {
        retry_timeout_ms: 1,
        retry_max_backoff_ms: 1,
        // As in the failure-isolation test: the deadline, not the re-send budget, must end
        // the charge step.
        max_attempts: u32::MAX,
        ..fast_deadline()
    })
    .await;
    let order_id = saga_with_refused_undo(&h).await;
    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "incident");
    assert_eq!(saga.next_retry_at, None);
    let mut conn = h.pool.acquire().await.unwrap();
    let incident = orchestrator_service::store::open_incident_of(&mut conn, saga.saga_id)
        .await
        .unwrap()
        .expect("an open incident");
    assert_eq!(incident.cause, "undo_refused");
    assert_eq!(incident.step.as_deref(), Some("charge_payment"));
    assert_eq!(incident.command.as_deref(), Some("RefundPayment"));
    assert!(incident.error.contains("overflows"), "{}", incident.error);
    // No further re-sends, however many rounds run.
    let before = h.outbox().await.len();
    for _ in 0..3 {
        assert_eq!(h.retry_due().await, 0);
    }
    assert_eq!(h.outbox().await.len(), before);

    // Skip: the refund is done by hand; the saga goes on unwinding.
    let after = h
        .runner()
        .operate(
            &h.pool,
            order_id.into_uuid(),
            OperatorAction::Skip,
            "refunded by hand",
        )
        .await
        .unwrap();
    assert_eq!(after.state, "compensating");
    assert_eq!(after.current_step.as_deref(), Some("reserve_stock"));
    let release = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReleased(stock_released(&release)))
        .await;
    let reject = h.last_command().await;
    h.order_event(OrderEvent::OrderRejected(order_rejected(&reject, "x")))
        .await;
    assert_eq!(h.saga(order_id).await.state, "aborted");
    let timeline = h.timeline(after.saga_id).await;
    let op = timeline.iter().find(|t| t.outcome == "operator").unwrap();
    assert_eq!(op.detail.as_deref(), Some("skip: refunded by hand"));
    let incident = orchestrator_service::store::latest_incident(&h.pool, after.saga_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.resolution.as_deref(), Some("skip"));
}

#[tokio::test]
async fn a_refused_undo_retried_after_the_cause_is_fixed_ends_the_saga() {
    let h = Harness::new(fast_deadline()).await;
    let order_id = saga_with_refused_undo(&h).await;
    let sent = h.outbox().await.len();
    let after = h
        .runner()
        .operate(
            &h.pool,
            order_id.into_uuid(),
            OperatorAction::Retry,
            "balance fixed",
        )
        .await
        .unwrap();
    assert_eq!(after.state, "compensating");
    assert_eq!(after.attempts, 0);
    let out = h.outbox().await;
    assert_eq!(out.len(), sent + 1);
    let refund: PaymentCommand = h.decode(out.last().unwrap()).await;
    assert!(matches!(refund, PaymentCommand::RefundPayment(_)));
    h.payment_event(PaymentEvent::PaymentRefunded(payment_refunded(
        refund.meta(),
        saga_contracts::Money::new(0, saga_contracts::Currency::parse("EUR").unwrap()),
    )))
    .await;
    let release = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReleased(stock_released(&release)))
        .await;
    let reject = h.last_command().await;
    h.order_event(OrderEvent::OrderRejected(order_rejected(&reject, "x")))
        .await;
    assert_eq!(h.saga(order_id).await.state, "aborted");
}

#[tokio::test]
async fn the_attempts_budget_running_out_opens_an_incident() {
    let h = Harness::new(SagaConfig {
        retry_timeout_ms: 1,
        retry_max_backoff_ms: 1,
        max_attempts: 2,
        ..SagaConfig::default()
    })
    .await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let order_id = placed.meta.order_id;
    due_until(&h, async |h| h.saga(order_id).await.state == "incident").await;
    let saga = h.saga(order_id).await;
    let incident = orchestrator_service::store::latest_incident(&h.pool, saga.saga_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.cause, "attempts_exhausted");
    assert_eq!(incident.attempts, 2);
    assert_eq!(incident.command.as_deref(), Some("ReserveStock"));
    // Initial send + 2 re-sends, then nothing.
    let reserves = || async {
        types_in_outbox(&h)
            .await
            .iter()
            .filter(|t| *t == "ReserveStock")
            .count()
    };
    assert_eq!(reserves().await, 3);
    h.retry_due().await;
    assert_eq!(reserves().await, 3);
    // Abort applies to it (it stood running): the reservation is undone, the order rejected.
    let after = h
        .runner()
        .operate(
            &h.pool,
            order_id.into_uuid(),
            OperatorAction::Abort,
            "inventory is gone",
        )
        .await
        .unwrap();
    assert_eq!(after.state, "compensating");
    let release: InventoryCommand = h.decode(&h.last_command_row().await).await;
    assert!(matches!(release, InventoryCommand::ReleaseStock(_)));
}

#[tokio::test]
async fn a_corrupt_saga_row_does_not_stop_other_sagas_retries_and_deadlines() {
    let h = Harness::new(SagaConfig {
        retry_timeout_ms: 1,
        retry_max_backoff_ms: 1,
        // Re-sends every round: with the default budget (10) a fast machine spent it in
        // under the 20 ms step deadline, and the timing-out saga became an "attempts
        // exhausted" incident instead of timing out (a flake found by CI).
        max_attempts: u32::MAX,
        ..fast_deadline()
    })
    .await;
    let broken = order_placed();
    h.order_event(OrderEvent::OrderPlaced(broken.clone())).await;
    sqlx::query("UPDATE sagas SET data = '{\"not\": \"an order\"}' WHERE order_id = $1")
        .bind(broken.meta.order_id.into_uuid())
        .execute(&h.pool)
        .await
        .unwrap();
    let fine = order_placed();
    h.order_event(OrderEvent::OrderPlaced(fine.clone())).await;
    let timing_out = saga_at_charge(&h).await;
    due_until(&h, async |h| {
        h.saga(timing_out).await.state == "compensating"
            && h.saga(fine.meta.order_id).await.attempts >= 1
    })
    .await;
    let saga = h.saga(broken.meta.order_id).await;
    assert_eq!(saga.state, "incident");
    let incident = orchestrator_service::store::latest_incident(&h.pool, saga.saga_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.cause, "processing_error");
    // Retry cannot resume an unreadable row: 409 material.
    let err = h
        .runner()
        .operate(&h.pool, saga.saga_id, OperatorAction::Retry, "try")
        .await
        .unwrap_err();
    assert!(
        matches!(err, orchestrator_service::OperateError::NotApplicable(_)),
        "{err}"
    );
}

#[tokio::test]
async fn operator_actions_that_do_not_apply_are_refused() {
    let h = Harness::new(fast_deadline()).await;
    let order_id = saga_at_charge(&h).await;
    let id = order_id.into_uuid();
    let op = |a| {
        let h = &h;
        async move { h.runner().operate(&h.pool, id, a, "why").await }
    };
    // Running: skip does not apply; retry re-sends; abort compensates.
    assert!(op(OperatorAction::Skip).await.is_err());
    let retried = op(OperatorAction::Retry).await.unwrap();
    assert_eq!(retried.state, "running");
    let charge: PaymentCommand = h.decode(&h.last_command_row().await).await;
    assert!(matches!(charge, PaymentCommand::ChargePayment(_)));
    let aborted = op(OperatorAction::Abort).await.unwrap();
    assert_eq!(aborted.state, "compensating");
    assert!(
        aborted
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("aborted by operator: why")
    );
    // Compensating: abort does not apply; skip does.
    assert!(op(OperatorAction::Abort).await.is_err());
    op(OperatorAction::Skip).await.unwrap(); // refund
    op(OperatorAction::Skip).await.unwrap(); // release
    let done = op(OperatorAction::Skip).await.unwrap(); // reject notice
    assert_eq!(done.state, "aborted");
    // Finished: nothing applies.
    for a in [
        OperatorAction::Retry,
        OperatorAction::Skip,
        OperatorAction::Abort,
    ] {
        let err = op(a).await.unwrap_err();
        assert!(
            matches!(err, orchestrator_service::OperateError::NotApplicable(_)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn operator_actions_over_http_need_a_reason_and_answer_409_when_they_do_not_apply() {
    let h = Harness::new(fast_deadline()).await;
    let order_id = saga_at_charge(&h).await;
    let base = h.serve().await;
    let client = reqwest::Client::new();
    let url = |a: &str| format!("{base}/sagas/{order_id}/{a}");
    let r = client
        .post(url("abort"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = client
        .post(url("abort"))
        .json(&serde_json::json!({"reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(url("skip"))
        .json(&serde_json::json!({"reason": "nothing to skip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let r = client
        .post(url("abort"))
        .json(&serde_json::json!({"reason": "customer called"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["state"], "compensating");
    assert!(
        body["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["outcome"] == "operator")
    );
    // Listing: the stuck ones and by the new state.
    let r: serde_json::Value = client
        .get(format!("{base}/sagas?stuck_for=0s"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let r = client
        .get(format!("{base}/sagas?stuck_for=1h"))
        .send()
        .await
        .unwrap();
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 0);
    let r = client
        .get(format!("{base}/sagas?state=incident"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/sagas?stuck_for=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn only_timelines_of_sagas_finished_past_the_retention_are_compacted() {
    let h = Harness::new(SagaConfig {
        timeline_retention_secs: 3600,
        ..fast_deadline()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let order_id = saga_at_charge(&h).await;
        h.runner()
            .operate(&h.pool, order_id.into_uuid(), OperatorAction::Abort, "x")
            .await
            .unwrap();
        for _ in 0..3 {
            h.runner()
                .operate(&h.pool, order_id.into_uuid(), OperatorAction::Skip, "x")
                .await
                .ok();
        }
        ids.push(h.saga(order_id).await.saga_id);
    }
    // [0] finished two hours ago, [1] just now, [2] still running (reset to running).
    sqlx::query("UPDATE sagas SET finished_at = now() - interval '2 hours' WHERE saga_id = $1")
        .bind(ids[0])
        .execute(&h.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sagas SET finished_at = NULL, state = 'running' WHERE saga_id = $1")
        .bind(ids[2])
        .execute(&h.pool)
        .await
        .unwrap();
    let lens: Vec<usize> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(h.timeline(*id).await.len());
        }
        v
    };
    assert!(lens.iter().all(|&n| n > 2), "{lens:?}");
    let last_before = h.timeline(ids[0]).await.last().unwrap().seq;
    h.runner().compact_timelines_once(&h.pool).await.unwrap();
    let old = h.timeline(ids[0]).await;
    assert_eq!(old.len(), 2);
    assert_eq!(old[0].outcome, "started");
    assert_eq!(old[1].seq, last_before);
    assert_eq!(h.timeline(ids[1]).await.len(), lens[1]);
    assert_eq!(h.timeline(ids[2]).await.len(), lens[2]);
}

#[tokio::test]
async fn an_inventory_refusal_of_reserve_fails_the_step_and_the_saga_aborts() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::InventoryCommandRefused(
        InventoryCommandRefused {
            meta: Metadata::caused_by(&reserve),
            command: "ReserveStock".into(),
            reason: "quantity out of range".into(),
        },
    ))
    .await;
    let saga = h.saga(placed.meta.order_id).await;
    assert_eq!(saga.state, "aborting");
    assert!(
        saga.failure_reason
            .unwrap()
            .contains("ReserveStock refused")
    );
}

/// A dead letter as a participant's consumer writes it (headers only matter).
fn dead_letter(
    order_id: saga_contracts::OrderId,
    source: &str,
    message_type: &str,
    offset: i64,
) -> orchestrator_service::dead_letters::DeadLetterNotice {
    use saga_consumer::dead_letters as dlq;
    let headers = saga_kafka::headers::HeaderMap::from([
        (dlq::SOURCE_TOPIC.to_owned(), format!("pfx-{source}")),
        (dlq::ERROR.to_owned(), "amount does not decode".to_owned()),
        (dlq::CONSUMER_GROUP.to_owned(), "payment-service".to_owned()),
        (
            saga_kafka::headers::MESSAGE_TYPE.to_owned(),
            message_type.to_owned(),
        ),
        (
            saga_kafka::headers::MESSAGE_ID.to_owned(),
            uuid::Uuid::now_v7().to_string(),
        ),
    ]);
    orchestrator_service::dead_letters::DeadLetterNotice::from_parts(
        "pfx-dead-letters",
        2,
        offset,
        Some(&order_id.to_string()),
        &headers,
        "pfx-",
    )
}

#[tokio::test]
async fn a_dead_lettered_pending_command_opens_an_incident_that_points_at_the_dead_letter() {
    use orchestrator_service::dead_letters::DeadLetterOutcome;
    use saga_contracts::topics;
    let h = Harness::new(SagaConfig::default()).await;
    let order_id = saga_at_charge(&h).await;
    let on = |n| {
        let h = &h;
        async move { h.runner().on_dead_letter(&h.pool, &n).await.unwrap() }
    };
    // Not what the saga waits on: a command of a step it is past, a reply, another order.
    let past = dead_letter(order_id, topics::INVENTORY_COMMANDS, "ReserveStock", 5);
    assert_eq!(on(past).await, DeadLetterOutcome::NotPending);
    let reply = dead_letter(order_id, topics::PAYMENT_EVENTS, "ChargePayment", 6);
    assert_eq!(on(reply).await, DeadLetterOutcome::NotPending);
    let other = dead_letter(
        saga_contracts::OrderId::new(),
        topics::PAYMENT_COMMANDS,
        "ChargePayment",
        7,
    );
    assert_eq!(on(other).await, DeadLetterOutcome::NotPending);
    assert_eq!(h.saga(order_id).await.state, "running");

    // The pending ChargePayment: an incident that points at the dead letter, no re-sends.
    let letter = dead_letter(order_id, topics::PAYMENT_COMMANDS, "ChargePayment", 8);
    assert_eq!(on(letter.clone()).await, DeadLetterOutcome::IncidentOpened);
    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "incident");
    assert_eq!((saga.next_retry_at, saga.deadline_at), (None, None));
    let incident = orchestrator_service::store::latest_incident(&h.pool, saga.saga_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.cause, "dead_lettered");
    assert_eq!(incident.step.as_deref(), Some("charge_payment"));
    assert_eq!(incident.command.as_deref(), Some("ChargePayment"));
    assert!(
        incident.error.contains("amount does not decode"),
        "{}",
        incident.error
    );
    let dl = incident.dead_letter.expect("the dead letter");
    assert_eq!(dl["topic"], "pfx-dead-letters");
    assert_eq!(
        (dl["partition"].as_i64(), dl["offset"].as_i64()),
        (Some(2), Some(8))
    );
    assert_eq!(dl["source_topic"], topics::PAYMENT_COMMANDS);
    assert_eq!(dl["error"], "amount does not decode");
    // Read twice (a restart before the offset commit, a second instance): nothing new.
    assert_eq!(on(letter).await, DeadLetterOutcome::AlreadyRecorded);

    // Retry once the cause is fixed: the command is sent again and the saga runs on.
    let sent = h.outbox().await.len();
    let after = h
        .runner()
        .operate(
            &h.pool,
            order_id.into_uuid(),
            OperatorAction::Retry,
            "fixed the decoder",
        )
        .await
        .unwrap();
    assert_eq!(after.state, "running");
    let out = h.outbox().await;
    assert_eq!(out.len(), sent + 1);
    let charge: PaymentCommand = h.decode(out.last().unwrap()).await;
    assert!(matches!(charge, PaymentCommand::ChargePayment(_)));
    // The old letter read once more after the retry still changes nothing.
    let again = dead_letter(order_id, topics::PAYMENT_COMMANDS, "ChargePayment", 8);
    assert_eq!(on(again).await, DeadLetterOutcome::AlreadyRecorded);
}

/// Feed every reply of the happy path: the saga ends completed.
async fn completed_saga(h: &Harness) -> saga_contracts::OrderId {
    use saga_contracts::{ShippingCommand, ShippingEvent};
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    let charge = h.last_command().await;
    h.payment_event(PaymentEvent::PaymentCharged(payment_charged(
        &charge,
        placed.total,
    )))
    .await;
    let schedule: ShippingCommand = h.decode(&h.last_command_row().await).await;
    h.shipping_event(ShippingEvent::ShipmentScheduled(shipment_scheduled(
        schedule.meta(),
    )))
    .await;
    let approve = h.last_command().await;
    h.order_event(OrderEvent::OrderApproved(order_approved(&approve)))
        .await;
    assert_eq!(h.saga(placed.meta.order_id).await.state, "completed");
    placed.meta.order_id
}

#[tokio::test]
async fn each_operator_action_on_each_state_applies_or_is_refused() {
    use OperatorAction::{Abort, Retry, Skip};
    use orchestrator_service::OperateError;
    let h = Harness::new(fast_deadline()).await;
    let op = |id: saga_contracts::OrderId, a: OperatorAction| {
        let h = &h;
        async move {
            h.runner()
                .operate(&h.pool, id.into_uuid(), a, "why")
                .await
                .map(|r| r.state)
        }
    };
    let refused =
        |r: Result<String, OperateError>| matches!(r, Err(OperateError::NotApplicable(_)));
    let hr = &h;
    let last_type = move || async move { hr.outbox().await.last().unwrap().message_type.clone() };

    // Incident that stood compensating (an undo refused for good): abort does not apply,
    // skip goes on unwinding. (Retry: a_refused_undo_retried_after_the_cause_is_fixed...)
    // First, because it runs the due round that would time out the sagas below.
    let id = saga_with_refused_undo(&h).await;
    assert!(refused(op(id, Abort).await));
    assert_eq!(
        h.saga(id).await.state,
        "incident",
        "a refusal changes nothing"
    );
    assert_eq!(op(id, Skip).await.unwrap(), "compensating");

    // Running (at charge_payment): skip does not apply; retry re-sends; abort compensates.
    let id = saga_at_charge(&h).await;
    assert!(refused(op(id, Skip).await));
    assert_eq!(op(id, Retry).await.unwrap(), "running");
    assert_eq!(last_type().await, "ChargePayment");
    assert_eq!(op(id, Abort).await.unwrap(), "compensating");
    assert_eq!(last_type().await, "RefundPayment");
    // Compensating: abort does not apply; retry re-sends the undo; skip marks it done.
    assert!(refused(op(id, Abort).await));
    assert_eq!(op(id, Retry).await.unwrap(), "compensating");
    assert_eq!(last_type().await, "RefundPayment");
    assert_eq!(op(id, Skip).await.unwrap(), "compensating");
    assert_eq!(last_type().await, "ReleaseStock");
    assert_eq!(op(id, Skip).await.unwrap(), "aborting");
    assert_eq!(last_type().await, "RejectOrder");
    // Aborting (the order's RejectOrder pending): abort does not apply; retry re-sends it;
    // skip ends the saga.
    assert!(refused(op(id, Abort).await));
    assert_eq!(op(id, Retry).await.unwrap(), "aborting");
    assert_eq!(last_type().await, "RejectOrder");
    assert_eq!(op(id, Skip).await.unwrap(), "aborted");
    // Aborted and completed: nothing applies.
    let done = completed_saga(&h).await;
    for a in [Retry, Skip, Abort] {
        assert!(refused(op(id, a).await), "{a:?} on aborted");
        assert!(refused(op(done, a).await), "{a:?} on completed");
    }

    // Incident that stood running (its command dead-lettered): skip does not apply; retry
    // resumes running; abort compensates.
    let stuck = move |offset| async move {
        let id = saga_at_charge(hr).await;
        let letter = dead_letter(
            id,
            saga_contracts::topics::PAYMENT_COMMANDS,
            "ChargePayment",
            offset,
        );
        hr.runner().on_dead_letter(&hr.pool, &letter).await.unwrap();
        assert_eq!(hr.saga(id).await.state, "incident");
        id
    };
    let id = stuck(1).await;
    assert!(refused(op(id, Skip).await));
    assert_eq!(op(id, Retry).await.unwrap(), "running");
    let id = stuck(2).await;
    assert_eq!(op(id, Abort).await.unwrap(), "compensating");
    assert_eq!(last_type().await, "RefundPayment");

    // Unknown saga: not found.
    let unknown = op(saga_contracts::OrderId::new(), Retry).await;
    assert!(
        matches!(unknown, Err(OperateError::NotFound(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn the_gauges_count_open_incidents_and_the_oldest_pending_step_age() {
    use orchestrator_service::store;
    let h = Harness::new(fast_deadline()).await;
    // First: it runs the due round, which would time out the saga below.
    let stuck = saga_with_refused_undo(&h).await;
    let waiting = saga_at_charge(&h).await;
    sqlx::query("UPDATE sagas SET step_started_at = now() - interval '1 hour' WHERE order_id = $1")
        .bind(waiting.into_uuid())
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(store::count_open_incidents(&h.pool).await.unwrap(), 1);
    let ages = store::oldest_pending_by_step(&h.pool).await.unwrap();
    let charge = ages
        .iter()
        .find(|(step, _)| step == "charge_payment")
        .map(|(_, age)| *age);
    assert!(charge.is_some_and(|a| a >= 3600.0), "{ages:?}");
    assert_eq!(ages.len(), 1, "the incident waits on nobody: {ages:?}");

    // The gauges are published under these names on /metrics.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(saga_service_kit::http::serve(
        listener,
        saga_service_kit::http::metrics_router(),
        tokio_util::sync::CancellationToken::new(),
    ));
    h.runner().refresh_gauge(&h.pool).await.unwrap();
    let page = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "saga_open_incidents",
        "saga_oldest_pending_step_age_seconds{step=\"charge_payment\"}",
        "sagas{state=\"incident\"}",
    ] {
        assert!(page.contains(name), "{name} not in:\n{page}");
    }

    // Resolved: no open incident any more.
    h.runner()
        .operate(
            &h.pool,
            stuck.into_uuid(),
            OperatorAction::Skip,
            "refunded by hand",
        )
        .await
        .unwrap();
    assert_eq!(store::count_open_incidents(&h.pool).await.unwrap(), 0);
}
