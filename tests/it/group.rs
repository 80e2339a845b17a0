//! Two instances of a participant in one consumer group (`subscribe()` membership), both
//! alive: all sagas finish and no effect happens twice.

use futures::future::join_all;
use saga_e2e::{Service, Suite, SuiteOptions};

use crate::concurrency::{CUSTOMERS, SKUS, order_items, seed};
use crate::support::assert_conserved;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inventory_instances_in_one_group() {
    let suite = Suite::start_with(SuiteOptions {
        group_membership: vec![Service::Inventory],
        extra_instances: vec![Service::Inventory],
        ..SuiteOptions::default()
    })
    .await;
    seed(&suite).await;
    let placed = join_all((0..30).map(|i| {
        let suite = &suite;
        async move {
            let (customer, items) = order_items(i);
            suite.place_order(customer, &items, "US").await
        }
    }))
    .await;
    let orders = suite.wait_all_final(&placed).await;
    assert_conserved(&suite, &orders, &SKUS, &CUSTOMERS).await;

    // Each ReserveStock the orchestrator sent was applied once: one inbox row per command
    // message, and never more reservation decisions than commands.
    let commands: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_type = 'ReserveStock'")
            .fetch_one(suite.pool(Service::Orchestrator))
            .await
            .unwrap();
    let reserve_replies: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE message_type IN ('StockReserved', 'StockUnavailable')",
    )
    .fetch_one(suite.pool(Service::Inventory))
    .await
    .unwrap();
    assert_eq!(
        reserve_replies, commands,
        "one reply per ReserveStock message"
    );
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}
