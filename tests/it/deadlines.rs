//! Sagas that cannot finish on their own, on the whole suite: a participant that never
//! answers (its step times out and the saga unwinds), the late action after the timeout-undo
//! (the participant's tombstone makes it a no-op), and an undo the participant refuses for
//! good (an incident, resolved by an operator over HTTP). docs/saga.md "Deadlines".

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_consumer::dead_letters::{self, DeadLetter};
use saga_contracts::OrderId;
use saga_e2e::{SAGA_DEADLINE, Service, Suite, SuiteOptions, eur};
use saga_kafka::{headers, topics};
use saga_testkit::wait_until;
use serde_json::{Value, json};

use crate::support::saga_state;

/// charge_payment times out after 3 s; re-sends are far away, so the payment topic holds
/// exactly the ChargePayment and, after the deadline, the RefundPayment.
fn charge_deadline() -> SuiteOptions {
    SuiteOptions {
        step_deadlines_ms: BTreeMap::from([("charge_payment".to_owned(), 3_000)]),
        retry_timeout_ms: 60_000,
        ..SuiteOptions::default()
    }
}

async fn seed(suite: &Suite, sku: &str, customer: &str) {
    suite.set_price(sku, eur(1_000)).await;
    suite.seed_stock(sku, 10).await;
    suite.set_credit(customer, eur(10_000)).await;
}

/// Waits until the saga has given up on `step` (its deadline passed) and unwinds.
async fn wait_timed_out(suite: &Suite, order_id: OrderId, step: &str) -> Value {
    let timed_out = |s: &Value| {
        s["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains(step) && r.contains("timed out"))
    };
    wait_until(SAGA_DEADLINE, || async {
        suite.saga(order_id).await.is_some_and(|s| timed_out(&s))
    })
    .await
    .unwrap_or_else(|_| panic!("{step} of {order_id} did not time out"));
    suite.saga(order_id).await.unwrap()
}

/// Every record on `topic` whose key is the order.
async fn records_of(suite: &Suite, topic: &str, order_id: OrderId) -> Vec<DeadLetter> {
    // `dead_letters::list` reads any topic from its start without committing.
    dead_letters::list(&suite.kafka, &suite.kafka.topic(topic))
        .await
        .expect("read the topic")
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(order_id.to_string().as_str()))
        .collect()
}

fn of_type<'a>(records: &'a [DeadLetter], type_name: &str) -> Option<&'a DeadLetter> {
    records
        .iter()
        .find(|r| r.header(headers::MESSAGE_TYPE) == Some(type_name))
}

async fn payment_status(suite: &Suite, order_id: OrderId) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(order_id.into_uuid())
        .fetch_optional(suite.pool(Service::Payment))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_never_answers_times_out_the_step_and_the_order_is_rejected() {
    let mut suite = Suite::start_with(charge_deadline()).await;
    seed(&suite, "SKU-T", "cust-t").await;
    suite.stop_service(Service::Payment).await;

    let order_id = suite.place_order("cust-t", &[("SKU-T", 2)], "DE").await;
    let saga = wait_timed_out(&suite, order_id, "charge_payment").await;
    assert_eq!(saga["state"], "compensating", "{saga}");
    assert_eq!(saga["current_step"], "charge_payment", "{saga}");
    assert_eq!(
        suite.order(order_id).await.unwrap().status,
        "PENDING",
        "the order waits for the unwinding"
    );

    // The payment service comes back: it sees the charge and then its undo, in that order.
    suite.restart(Service::Payment).await;
    let order = suite.wait_final(order_id).await;
    assert_eq!(order.status, "REJECTED");
    let reason = order.rejection_reason.unwrap_or_default();
    assert!(
        reason.contains("charge_payment") && reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(saga_state(&suite, order_id).await, "aborted");
    let stock = suite.stock("SKU-T").await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    let account = suite.account("cust-t").await;
    assert_eq!((account.credit, account.charged), (eur(10_000), eur(0)));
    assert_eq!(suite.shipment(order_id).await, None);
    suite.wait_drained().await;
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_late_action_after_the_timeout_undo_applies_nothing() {
    let mut suite = Suite::start_with(charge_deadline()).await;
    seed(&suite, "SKU-L", "cust-l").await;
    suite.stop_service(Service::Payment).await;

    let order_id = suite.place_order("cust-l", &[("SKU-L", 2)], "DE").await;
    wait_timed_out(&suite, order_id, "charge_payment").await;
    // Both commands are on the payment topic, the ChargePayment first (one key, one partition).
    wait_until(SAGA_DEADLINE, || async {
        let records = records_of(&suite, topics::PAYMENT_COMMANDS, order_id).await;
        of_type(&records, "RefundPayment").is_some()
    })
    .await
    .expect("the RefundPayment is published");
    let records = records_of(&suite, topics::PAYMENT_COMMANDS, order_id).await;
    let charge = of_type(&records, "ChargePayment")
        .expect("the ChargePayment")
        .clone();
    let refund = of_type(&records, "RefundPayment").unwrap().clone();
    assert_eq!(charge.partition, refund.partition);
    assert!(charge.offset < refund.offset);

    // Make the action late: the payment service's group resumes at the refund, as if the
    // ChargePayment were still in flight (a slow network path, a dead letter not yet
    // replayed). It is delivered below, after the undo.
    let (group, _) = suite
        .consumer_groups()
        .into_iter()
        .find(|(_, topic)| *topic == topics::PAYMENT_COMMANDS)
        .unwrap();
    commit_offset(
        &suite,
        &group,
        topics::PAYMENT_COMMANDS,
        refund.partition,
        refund.offset,
    )
    .await;
    suite.restart(Service::Payment).await;

    // The undo came first: a tombstone, a zero refund, and the saga unwinds.
    let order = suite.wait_final(order_id).await;
    assert_eq!(order.status, "REJECTED");
    assert!(
        order
            .rejection_reason
            .as_deref()
            .is_some_and(|r| r.contains("charge_payment")),
        "{order:?}"
    );
    assert_eq!(
        payment_status(&suite, order_id).await.as_deref(),
        Some("tombstone")
    );

    // Now the late ChargePayment, byte for byte as the orchestrator wrote it.
    let producer: FutureProducer = suite.kafka.producer().expect("producer");
    let key = charge.key.clone().unwrap();
    let payload = charge.payload.clone().unwrap();
    producer
        .send(
            FutureRecord::to(&suite.kafka.topic(topics::PAYMENT_COMMANDS))
                .key(&key)
                .payload(&payload)
                .headers(headers::to_kafka_headers(&charge.headers)),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("publish the late ChargePayment");
    // Payment handled it (it answers a declined charge) and applied nothing.
    wait_until(SAGA_DEADLINE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE message_key = $1 AND message_type = 'PaymentDeclined'",
        )
        .bind(order_id.to_string())
        .fetch_one(suite.pool(Service::Payment))
        .await
        .unwrap()
            == 1
    })
    .await
    .expect("the late ChargePayment is answered with a decline");
    assert_eq!(
        payment_status(&suite, order_id).await.as_deref(),
        Some("tombstone")
    );
    let account = suite.account("cust-l").await;
    assert_eq!((account.credit, account.charged), (eur(10_000), eur(0)));
    let stock = suite.stock("SKU-L").await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    suite.wait_drained().await;
    // The orchestrator records the decline as ignored: the saga stays as it ended.
    assert_eq!(saga_state(&suite, order_id).await, "aborted");
    assert_eq!(suite.order(order_id).await.unwrap().status, "REJECTED");
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}

/// Commit `offset` (the next record to read) for `group` on one partition, as the group's
/// own consumer would after handling everything before it.
async fn commit_offset(suite: &Suite, group: &str, topic: &str, partition: i32, offset: i64) {
    let kafka = suite.kafka.clone();
    let (group, wire) = (group.to_owned(), suite.kafka.topic(topic));
    tokio::task::spawn_blocking(move || {
        let mut config = kafka.client_config();
        config.set("group.id", &group);
        config.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&wire, partition, rdkafka::Offset::Offset(offset))
            .unwrap();
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("commit the group's offset");
    })
    .await
    .unwrap();
}

async fn operate(
    suite: &Suite,
    order_id: OrderId,
    action: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let url = format!(
        "{}/sagas/{order_id}/{action}",
        suite.url(Service::Orchestrator)
    );
    let mut req = suite
        .http()
        .post(&url)
        .json(&json!({ "reason": "e2e: resolved by the operator" }));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn wait_state(suite: &Suite, order_id: OrderId, state: &str) -> Value {
    wait_until(SAGA_DEADLINE, || async {
        saga_state(suite, order_id).await == state
    })
    .await
    .unwrap_or_else(|_| panic!("saga of {order_id} never {state}"));
    suite.saga(order_id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_refused_for_good_is_an_incident_resolved_by_retry_or_skip_over_http() {
    let mut suite = Suite::start_with(SuiteOptions {
        // Shipping is stopped for a while: its step must not time out meanwhile.
        step_deadlines_ms: BTreeMap::from([("schedule_shipment".to_owned(), 0)]),
        retry_timeout_ms: 60_000,
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite, "SKU-R", "cust-retry").await;
    suite.set_credit("cust-skip", eur(10_000)).await;
    suite.stop_service(Service::Shipping).await;

    // JP is not served: shipping will refuse, and the payment must be refunded.
    let retried = suite.place_order("cust-retry", &[("SKU-R", 1)], "JP").await;
    let skipped = suite.place_order("cust-skip", &[("SKU-R", 1)], "JP").await;
    wait_until(SAGA_DEADLINE, || async {
        payment_status(&suite, retried).await.as_deref() == Some("charged")
            && payment_status(&suite, skipped).await.as_deref() == Some("charged")
    })
    .await
    .expect("both orders are charged");
    // A credit so large that adding the refund overflows: payment must refuse the refund.
    for customer in ["cust-retry", "cust-skip"] {
        suite.set_credit(customer, eur(i64::MAX - 10)).await;
    }
    suite.restart(Service::Shipping).await;

    for order_id in [retried, skipped] {
        let saga = wait_state(&suite, order_id, "incident").await;
        let incident = &saga["incident"];
        assert_eq!(incident["cause"], "undo_refused", "{saga}");
        assert_eq!(incident["step"], "charge_payment", "{saga}");
        assert_eq!(incident["command"], "RefundPayment", "{saga}");
        assert!(
            incident["error"].as_str().unwrap().contains("overflows"),
            "{saga}"
        );
        assert_eq!(saga["next_retry_at"], Value::Null, "no further re-sends");
    }
    // No re-sends and no dead letters while the incidents are open: the retry task runs
    // every 100 ms; wait until every consumer is idle, then count.
    suite.wait_drained().await;
    let refunds = |order_id: OrderId| {
        let pool = suite.pool(Service::Orchestrator).clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE message_key = $1 AND message_type = 'RefundPayment'",
            )
            .bind(order_id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(refunds(retried).await, 1);
    assert_eq!(refunds(skipped).await, 1);
    suite.assert_no_dead_letters().await;

    // Operator actions are admin routes.
    let (status, _) = operate(&suite, skipped, "skip", None).await;
    assert_eq!(status, 401);
    let (status, _) = operate(&suite, skipped, "abort", Some(suite.admin_token())).await;
    assert_eq!(status, 409, "an incident in compensation cannot be aborted");

    // Retry after the cause is fixed: the refund goes through and the saga ends.
    suite.set_credit("cust-retry", eur(0)).await;
    let (status, body) = operate(&suite, retried, "retry", Some(suite.admin_token())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "compensating");
    let order = suite.wait_final(retried).await;
    assert_eq!(order.status, "REJECTED");
    assert_eq!(refunds(retried).await, 2);
    let account = suite.account("cust-retry").await;
    assert_eq!((account.credit, account.charged), (eur(1_000), eur(0)));

    // Skip: the refund was done by hand; the saga goes on unwinding and ends.
    let (status, body) = operate(&suite, skipped, "skip", Some(suite.admin_token())).await;
    assert_eq!(status, 200, "{body}");
    let order = suite.wait_final(skipped).await;
    assert_eq!(order.status, "REJECTED");
    assert!(
        order
            .rejection_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("shipment refused")),
        "{order:?}"
    );
    assert_eq!(refunds(skipped).await, 1, "skip sends nothing to payment");
    let saga = suite.saga(skipped).await.unwrap();
    assert_eq!(saga["incident"]["resolution"], "skip", "{saga}");
    assert!(
        saga["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["outcome"] == "operator"
                && t["detail"] == "skip: e2e: resolved by the operator"),
        "{saga}"
    );
    let stock = suite.stock("SKU-R").await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    suite.wait_drained().await;
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}
