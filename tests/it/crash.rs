//! A participant and, separately, the orchestrator killed with SIGKILL mid-saga and
//! restarted: every saga still finishes correctly. The victim runs as a child process of its
//! binary; every consumer uses `assign` membership (tansu never evicts a killed group member).

use std::time::Duration;

use futures::future::join_all;
use saga_contracts::OrderId;
use saga_e2e::{Service, Suite, SuiteOptions};
use saga_testkit::wait_until;

use crate::concurrency::{CUSTOMERS, SKUS, order_items, seed};
use crate::support::assert_conserved;

async fn place(suite: &Suite, range: std::ops::Range<usize>) -> Vec<OrderId> {
    join_all(range.map(|i| async move {
        let (customer, items) = order_items(i);
        suite.place_order(customer, &items, "GB").await
    }))
    .await
}

async fn count(suite: &Suite, service: Service, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(suite.pool(service))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_killed_mid_saga_and_restarted() {
    let mut suite = Suite::start_with(SuiteOptions {
        processes: vec![Service::Payment],
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite).await;
    let mut orders = place(&suite, 0..15).await;
    // Kill it while it is working: as soon as it has decided the first charges.
    wait_until(Duration::from_secs(60), || async {
        count(&suite, Service::Payment, "SELECT count(*) FROM payments").await > 0
    })
    .await
    .expect("payment starts charging");
    suite.kill(Service::Payment).await;

    // Sagas keep arriving while it is down and stop at the payment step.
    orders.extend(place(&suite, 15..30).await);
    wait_until(Duration::from_secs(60), || async {
        count(
            &suite,
            Service::Orchestrator,
            "SELECT count(*) FROM sagas WHERE state = 'running' AND current_step = 'charge_payment'",
        )
        .await
            > 0
    })
    .await
    .expect("sagas wait on the dead payment service");
    let unfinished = join_all(orders.iter().map(|id| suite.is_final(*id)))
        .await
        .into_iter()
        .filter(|done| !done)
        .count();
    assert!(unfinished > 0, "the kill happened mid-saga");

    suite.restart(Service::Payment).await;
    let views = suite.wait_all_final(&orders).await;
    assert_conserved(&suite, &views, &SKUS, &CUSTOMERS).await;
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_saga_and_restarted() {
    let mut suite = Suite::start_with(SuiteOptions {
        processes: vec![Service::Orchestrator],
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite).await;
    let mut orders = place(&suite, 0..15).await;
    wait_until(Duration::from_secs(60), || async {
        count(
            &suite,
            Service::Orchestrator,
            "SELECT count(*) FROM saga_transitions WHERE outcome = 'applied'",
        )
        .await
            > 0
    })
    .await
    .expect("sagas get going");
    suite.kill(Service::Orchestrator).await;
    let unfinished = count(
        &suite,
        Service::Orchestrator,
        "SELECT count(*) FROM sagas WHERE state NOT IN ('completed', 'aborted')",
    )
    .await;
    let started = count(&suite, Service::Orchestrator, "SELECT count(*) FROM sagas").await;
    assert!(
        unfinished > 0 || started < orders.len() as i64,
        "the kill happened mid-saga"
    );

    // Orders keep coming while it is down; their OrderPlaced waits on the topic.
    orders.extend(place(&suite, 15..30).await);
    suite.restart(Service::Orchestrator).await;
    let views = suite.wait_all_final(&orders).await;
    let sagas = count(&suite, Service::Orchestrator, "SELECT count(*) FROM sagas").await;
    assert_eq!(sagas, orders.len() as i64, "one saga per order");
    assert_conserved(&suite, &views, &SKUS, &CUSTOMERS).await;
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}
