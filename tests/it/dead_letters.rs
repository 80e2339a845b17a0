//! Dead letters that stall an order, on the whole suite: a command a participant
//! dead-lettered opens an incident in the orchestrator (which reads the dead-letter topic),
//! resolved by an operator's retry; an OrderPlaced the orchestrator dead-lettered leaves the
//! order PENDING, reported as stale, until the dead letter is replayed.
//!
//! The failures are forced through the real databases: a trigger that raises a
//! non-transient error (SQLSTATE 22023), which the consumer runtime dead-letters at once.

use saga_consumer::dead_letters;
use saga_contracts::OrderId;
use saga_e2e::{SAGA_DEADLINE, Service, Suite, SuiteOptions, eur};
use saga_kafka::topics;
use saga_testkit::wait_until;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Make every insert into `table` fail with a permanent error (until [`unbreak`]).
async fn break_inserts(pool: &PgPool, table: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'e2e: inserts into {table} are broken' USING ERRCODE = '22023'; END $$; \
         CREATE TRIGGER e2e_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION e2e_refuse();"
    ))
    .execute(pool)
    .await
    .expect("install the failing trigger");
}

async fn unbreak(pool: &PgPool, table: &str) {
    sqlx::raw_sql(&format!(
        "DROP TRIGGER e2e_refuse ON {table}; DROP FUNCTION e2e_refuse();"
    ))
    .execute(pool)
    .await
    .expect("drop the failing trigger");
}

async fn seed(suite: &Suite, sku: &str, customer: &str) {
    suite.set_price(sku, eur(1_000)).await;
    suite.seed_stock(sku, 10).await;
    suite.set_credit(customer, eur(10_000)).await;
}

/// The dead letters about the order (the original record, with `dlq.*` headers).
async fn letters_of(suite: &Suite, order_id: OrderId) -> Vec<dead_letters::DeadLetter> {
    dead_letters::list(&suite.kafka, &suite.kafka.topic(topics::DEAD_LETTERS))
        .await
        .expect("list the dead letters")
        .into_iter()
        .filter(|l| l.key.as_deref() == Some(order_id.to_string().as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_participant_dead_lettered_opens_an_incident_and_retry_finishes_the_saga() {
    let suite = Suite::start_with(SuiteOptions {
        // No re-sends while the test looks: the incident must come from the dead letter.
        retry_timeout_ms: 60_000,
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite, "SKU-D", "cust-d").await;
    break_inserts(suite.pool(Service::Inventory), "reservations").await;

    let order_id = suite.place_order("cust-d", &[("SKU-D", 2)], "DE").await;
    wait_until(SAGA_DEADLINE, || async {
        suite
            .saga(order_id)
            .await
            .is_some_and(|s| s["state"] == "incident")
    })
    .await
    .expect("the dead-lettered ReserveStock opens an incident");
    let saga = suite.saga(order_id).await.unwrap();
    let incident = &saga["incident"];
    assert_eq!(incident["cause"], "dead_lettered", "{saga}");
    assert_eq!(incident["step"], "reserve_stock", "{saga}");
    assert_eq!(incident["command"], "ReserveStock", "{saga}");
    let dl = &incident["dead_letter"];
    assert_eq!(
        dl["topic"],
        suite.kafka.topic(topics::DEAD_LETTERS),
        "{saga}"
    );
    assert_eq!(dl["source_topic"], topics::INVENTORY_COMMANDS, "{saga}");
    assert!(
        dl["error"]
            .as_str()
            .unwrap()
            .contains("inserts into reservations are broken"),
        "{saga}"
    );
    // It points at the real dead letter.
    let letters = letters_of(&suite, order_id).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(
        (dl["partition"].as_i64(), dl["offset"].as_i64()),
        (
            Some(i64::from(letters[0].partition)),
            Some(letters[0].offset)
        )
    );

    // The cause is fixed; the operator retries over HTTP; the saga runs to the end.
    unbreak(suite.pool(Service::Inventory), "reservations").await;
    let resp = suite
        .http()
        .post(format!(
            "{}/sagas/{order_id}/retry",
            suite.url(Service::Orchestrator)
        ))
        .bearer_auth(suite.admin_token())
        .json(&json!({ "reason": "reservations table fixed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let order = suite.wait_final(order_id).await;
    assert_eq!(order.status, "APPROVED");
    let stock = suite.stock("SKU-D").await;
    assert_eq!((stock.available, stock.reserved), (8, 2));
    let saga = suite.saga(order_id).await.unwrap();
    assert_eq!(saga["incident"]["resolution"], "retry", "{saga}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_the_orchestrator_dead_lettered_is_stale_until_the_replay_starts_its_saga()
{
    let suite = Suite::start_with(SuiteOptions {
        order_pending_stale_after: Some("1s".to_owned()),
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite, "SKU-P", "cust-p").await;
    break_inserts(suite.pool(Service::Orchestrator), "sagas").await;

    let order_id = suite.place_order("cust-p", &[("SKU-P", 2)], "DE").await;
    wait_until(SAGA_DEADLINE, || async {
        !letters_of(&suite, order_id).await.is_empty()
    })
    .await
    .expect("the orchestrator dead-letters the OrderPlaced");
    let mut letters = letters_of(&suite, order_id).await;
    assert_eq!(letters.len(), 1);
    let letter = letters.remove(0);
    assert_eq!(
        letter.header(saga_kafka::headers::MESSAGE_TYPE),
        Some("OrderPlaced")
    );
    assert_eq!(suite.saga(order_id).await, None, "no saga started");

    // The order service reports it: PENDING for longer than order.pending_stale_after.
    let stale_url = format!(
        "{}/orders?status=PENDING&older_than=1s",
        suite.url(Service::Order)
    );
    let stale = || async {
        let page: Value = suite
            .http()
            .get(&stale_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    wait_until(SAGA_DEADLINE, || async {
        stale().await == [order_id.to_string()]
    })
    .await
    .expect("the order is reported stale");
    assert_eq!(
        order_service::projection::count_pending_older_than(
            suite.pool(Service::Order),
            std::time::Duration::from_secs(1)
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(suite.order(order_id).await.unwrap().status, "PENDING");

    // Fixed; the dead letter replayed (what `cargo xtask dlq replay` does): the saga starts.
    unbreak(suite.pool(Service::Orchestrator), "sagas").await;
    dead_letters::replay(&suite.kafka, &letter)
        .await
        .expect("replay the dead letter");
    let order = suite.wait_final(order_id).await;
    assert_eq!(order.status, "APPROVED");
    // The listing reads the read model, which follows the order a moment later.
    wait_until(SAGA_DEADLINE, || async { stale().await.is_empty() })
        .await
        .expect("no longer stale");
    let stock = suite.stock("SKU-P").await;
    assert_eq!((stock.available, stock.reserved), (8, 2));
    let account = suite.account("cust-p").await;
    assert_eq!((account.credit, account.charged), (eur(8_000), eur(2_000)));
    suite.stop().await;
}
