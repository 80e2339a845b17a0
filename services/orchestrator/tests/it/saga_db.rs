//! The saga against real Postgres and the real registry: each input handled in one
//! transaction, commands in the outbox, duplicates ignored, retries, restart.

use orchestrator_service::{Handled, SagaConfig};
use saga_contracts::{
    InventoryCommand, InventoryEvent, OrderCommand, OrderEvent, PaymentCommand, PaymentEvent,
    ShippingCommand, ShippingEvent,
};

use crate::harness::*;

#[tokio::test]
async fn order_placed_twice_starts_one_saga_and_sends_one_reserve_stock() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    let first = h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let Handled::Started(saga_id) = first else {
        panic!("expected a new saga, got {first:?}")
    };
    let again = h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    assert_eq!(again, Handled::AlreadyStarted(saga_id));

    let out = h.outbox().await;
    assert_eq!(out.len(), 1, "{out:?}");
    let cmd: InventoryCommand = h.decode(&out[0]).await;
    let InventoryCommand::ReserveStock(reserve) = cmd else {
        panic!("expected ReserveStock, got {cmd:?}")
    };
    assert_eq!(reserve.meta.order_id, placed.meta.order_id);
    assert_eq!(reserve.meta.saga_id, Some(saga_id));
    assert_eq!(reserve.meta.causation_id, Some(placed.meta.message_id));
    assert_eq!(reserve.meta.correlation_id, placed.meta.correlation_id);
    assert_eq!(reserve.lines.len(), placed.lines.len());

    let saga = h.saga(placed.meta.order_id).await;
    assert_eq!(saga.state, "running");
    assert_eq!(saga.current_step.as_deref(), Some("reserve_stock"));
}

#[tokio::test]
async fn happy_path_ends_completed_with_a_full_timeline() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    let order_id = placed.meta.order_id;
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;

    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    let charge: PaymentCommand = h.decode(&h.last_command_row().await).await;
    let PaymentCommand::ChargePayment(charge) = charge else {
        panic!("{charge:?}")
    };
    assert_eq!(charge.amount, placed.total);
    h.payment_event(PaymentEvent::PaymentCharged(payment_charged(
        &charge.meta,
        placed.total,
    )))
    .await;
    let schedule: ShippingCommand = h.decode(&h.last_command_row().await).await;
    let ShippingCommand::ScheduleShipment(schedule) = schedule else {
        panic!("{schedule:?}")
    };
    assert_eq!(schedule.address, placed.shipping_address);
    h.shipping_event(ShippingEvent::ShipmentScheduled(shipment_scheduled(
        &schedule.meta,
    )))
    .await;
    let approve: OrderCommand = h.decode(&h.last_command_row().await).await;
    let OrderCommand::ApproveOrder(approve) = approve else {
        panic!("{approve:?}")
    };
    let done = h
        .order_event(OrderEvent::OrderApproved(order_approved(&approve.meta)))
        .await;
    assert!(matches!(done, Handled::Applied { status, .. } if status.as_str() == "completed"));

    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "completed");
    assert_eq!(saga.current_step, None);
    assert!(
        saga.next_retry_at.is_none(),
        "a finished saga has nothing to retry"
    );
    assert!(saga.finished_at.is_some());
    let data = saga.order_data().unwrap();
    assert!(
        data.reservation_id.is_some() && data.payment_id.is_some() && data.shipment_id.is_some()
    );

    let types: Vec<String> = h
        .outbox()
        .await
        .into_iter()
        .map(|r| r.message_type)
        .collect();
    assert_eq!(
        types,
        [
            "ReserveStock",
            "ChargePayment",
            "ScheduleShipment",
            "ApproveOrder"
        ]
    );
    let timeline = h.timeline(saga.saga_id).await;
    let caused_by: Vec<&str> = timeline.iter().map(|t| t.caused_by_type.as_str()).collect();
    assert_eq!(
        caused_by,
        [
            "OrderPlaced",
            "StockReserved",
            "PaymentCharged",
            "ShipmentScheduled",
            "OrderApproved"
        ]
    );
    assert!(timeline[1..].iter().all(|t| t.outcome == "applied"));
    assert_eq!(h.retry_due().await, 0, "nothing is due on a finished saga");
}

#[tokio::test]
async fn a_duplicate_reply_is_recorded_as_ignored_and_sends_nothing() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    // Two StockReserved with different message ids (the participant answered a re-sent
    // command twice): the inbox cannot catch this one, the saga must.
    let first = stock_reserved(&reserve);
    h.inventory_event(InventoryEvent::StockReserved(first))
        .await;
    let second = stock_reserved(&reserve);
    let again = h
        .inventory_event(InventoryEvent::StockReserved(second))
        .await;
    assert!(matches!(again, Handled::Ignored(_)), "{again:?}");

    let types: Vec<String> = h
        .outbox()
        .await
        .into_iter()
        .map(|r| r.message_type)
        .collect();
    assert_eq!(types, ["ReserveStock", "ChargePayment"]);
    let saga = h.saga(placed.meta.order_id).await;
    assert_eq!(saga.current_step.as_deref(), Some("charge_payment"));
    assert_eq!(saga.version, 2);
    let outcomes: Vec<String> = h
        .timeline(saga.saga_id)
        .await
        .into_iter()
        .map(|t| t.outcome)
        .collect();
    assert_eq!(outcomes, ["started", "applied", "ignored"]);
}

#[tokio::test]
async fn a_shipping_refusal_unwinds_payment_then_stock_and_rejects_with_the_reason() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    let order_id = placed.meta.order_id;
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
    let schedule = h.last_command().await;
    h.shipping_event(ShippingEvent::ShipmentRefused(shipment_refused(
        &schedule,
        "no courier",
    )))
    .await;

    assert_eq!(h.last_command_row().await.message_type, "RefundPayment");
    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "compensating");
    assert_eq!(saga.current_step.as_deref(), Some("charge_payment"));
    assert_eq!(
        saga.failure_reason.as_deref(),
        Some("shipment refused: no courier")
    );

    let refund = h.last_command().await;
    h.payment_event(PaymentEvent::PaymentRefunded(payment_refunded(
        &refund,
        placed.total,
    )))
    .await;
    assert_eq!(h.last_command_row().await.message_type, "ReleaseStock");
    let release = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReleased(stock_released(&release)))
        .await;

    let reject: OrderCommand = h.decode(&h.last_command_row().await).await;
    let OrderCommand::RejectOrder(reject) = reject else {
        panic!("{reject:?}")
    };
    assert_eq!(reject.reason, "shipment refused: no courier");
    assert_eq!(h.saga(order_id).await.state, "aborting");
    h.order_event(OrderEvent::OrderRejected(order_rejected(
        &reject.meta,
        &reject.reason,
    )))
    .await;
    let saga = h.saga(order_id).await;
    assert_eq!(saga.state, "aborted");
    assert!(
        saga.completed_steps.is_empty(),
        "{:?}",
        saga.completed_steps
    );

    let types: Vec<String> = h
        .outbox()
        .await
        .into_iter()
        .map(|r| r.message_type)
        .collect();
    assert_eq!(
        types,
        [
            "ReserveStock",
            "ChargePayment",
            "ScheduleShipment",
            "RefundPayment",
            "ReleaseStock",
            "RejectOrder"
        ]
    );
}

#[tokio::test]
async fn an_unacknowledged_undo_is_re_sent_with_a_new_id_and_the_same_cause_until_acked() {
    // Timeout 0: every retry round finds the saga due, so the test needs no clock.
    let h = Harness::new(SagaConfig {
        retry_timeout_ms: 0,
        retry_max_backoff_ms: 0,
        ..SagaConfig::default()
    })
    .await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    let charge = h.last_command().await;
    let declined = payment_declined(&charge);
    let declined_id = declined.meta.message_id;
    h.payment_event(PaymentEvent::PaymentDeclined(declined))
        .await;
    let release_row = h.last_command_row().await;
    assert_eq!(release_row.message_type, "ReleaseStock");
    let release = h.last_command().await;

    assert_eq!(h.retry_due().await, 1);
    assert_eq!(h.retry_due().await, 1);
    let rows = h.outbox().await;
    let releases: Vec<_> = rows
        .iter()
        .filter(|r| r.message_type == "ReleaseStock")
        .collect();
    assert_eq!(releases.len(), 3, "the undo and two re-sends");
    let mut ids = Vec::new();
    for row in &releases {
        let InventoryCommand::ReleaseStock(cmd) = h.decode::<InventoryCommand>(row).await else {
            panic!("expected ReleaseStock")
        };
        assert_eq!(
            cmd.meta.causation_id,
            Some(declined_id),
            "same cause on every re-send"
        );
        ids.push(cmd.meta.message_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each re-send has its own message id");
    let saga = h.saga(placed.meta.order_id).await;
    assert_eq!(saga.attempts, 2);
    assert_eq!(saga.state, "compensating");

    // The ack arrives (twice: once per delivered re-send); the saga moves on once.
    h.inventory_event(InventoryEvent::StockReleased(stock_released(&release)))
        .await;
    let dup = h
        .inventory_event(InventoryEvent::StockReleased(stock_released(&release)))
        .await;
    assert!(matches!(dup, Handled::Ignored(_)));
    assert_eq!(h.last_command_row().await.message_type, "RejectOrder");
    let saga = h.saga(placed.meta.order_id).await;
    assert_eq!(saga.state, "aborting");
    assert_eq!(saga.attempts, 0, "a transition resets the retry count");
    let outcomes: Vec<String> = h
        .timeline(saga.saga_id)
        .await
        .into_iter()
        .map(|t| t.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            "started", "applied", "applied", "retried", "retried", "applied", "ignored"
        ]
    );
}

#[tokio::test]
async fn retries_back_off_and_wait_for_the_timeout() {
    let h = Harness::new(SagaConfig {
        retry_timeout_ms: 60_000,
        ..SagaConfig::default()
    })
    .await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    assert_eq!(h.retry_due().await, 0, "not due before the timeout");
    let saga = h.saga(placed.meta.order_id).await;
    let wait = saga.next_retry_at.unwrap() - saga.updated_at;
    assert!(
        (59..=61).contains(&wait.num_seconds()),
        "first re-send after the timeout, got {wait:?}"
    );
}

#[tokio::test]
async fn a_restarted_orchestrator_continues_the_saga_from_the_database() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    let charge = h.last_command().await;

    // A new App (new pool, new runner, nothing shared in memory) on the same database.
    let h2 = h.restart().await;
    h2.payment_event(PaymentEvent::PaymentCharged(payment_charged(
        &charge,
        placed.total,
    )))
    .await;
    assert_eq!(h2.last_command_row().await.message_type, "ScheduleShipment");
    let saga = h2.saga(placed.meta.order_id).await;
    assert_eq!(saga.current_step.as_deref(), Some("schedule_shipment"));
    assert_eq!(saga.completed_steps, ["reserve_stock", "charge_payment"]);
}

#[tokio::test]
async fn a_reply_for_an_unknown_order_changes_nothing() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    let meta = saga_contracts::Metadata::first(placed.meta.order_id);
    let r = h
        .inventory_event(InventoryEvent::StockReserved(
            saga_contracts::StockReserved {
                meta,
                reservation_id: saga_contracts::ReservationId::new(),
            },
        ))
        .await;
    assert_eq!(r, Handled::UnknownOrder);
    assert!(h.outbox().await.is_empty());
}
