//! Each path of the saga ends in the right state with the right side effects, checked on
//! balances and stock, not only on the order's status. [`run_four_paths`] is shared with the
//! duplicate-delivery test, which must reach exactly the same outcome.

use saga_contracts::OrderId;
use saga_e2e::{Service, Suite, eur};
use saga_testkit::wait_until;

use crate::support::{dispatched_orders, saga_state};

/// The four orders of one run, one per path.
pub struct FourPaths {
    pub approved: OrderId,
    pub out_of_stock: OrderId,
    pub declined: OrderId,
    pub refused: OrderId,
}

/// Seeds one SKU and one customer per path (so each path's effects are visible on its own),
/// places the four orders concurrently and waits until they are final.
pub async fn run_four_paths(suite: &Suite) -> FourPaths {
    for sku in ["SKU-OK", "SKU-SHORT", "SKU-POOR", "SKU-FAR"] {
        suite.set_price(sku, eur(1_000)).await;
    }
    suite.seed_stock("SKU-OK", 10).await;
    suite.seed_stock("SKU-SHORT", 1).await;
    suite.seed_stock("SKU-POOR", 10).await;
    suite.seed_stock("SKU-FAR", 10).await;
    suite.set_credit("cust-ok", eur(10_000)).await;
    suite.set_credit("cust-short", eur(10_000)).await;
    suite.set_credit("cust-poor", eur(1_500)).await;
    suite.set_credit("cust-far", eur(10_000)).await;

    let (approved, out_of_stock, declined, refused) = tokio::join!(
        suite.place_order("cust-ok", &[("SKU-OK", 2)], "DE"),
        suite.place_order("cust-short", &[("SKU-SHORT", 3)], "DE"),
        suite.place_order("cust-poor", &[("SKU-POOR", 2)], "FR"),
        // JP is a valid country the shipping service does not serve.
        suite.place_order("cust-far", &[("SKU-FAR", 1)], "JP"),
    );
    suite
        .wait_all_final(&[approved, out_of_stock, declined, refused])
        .await;
    FourPaths {
        approved,
        out_of_stock,
        declined,
        refused,
    }
}

/// The outcome every run of [`run_four_paths`] must have, duplicates or not.
pub async fn check_four_paths(suite: &Suite, run: &FourPaths) {
    // Approved: stock taken, money charged, shipment booked and then dispatched.
    let order = suite.order(run.approved).await.unwrap();
    assert_eq!(order.status, "APPROVED", "{order:?}");
    assert_eq!(saga_state(suite, run.approved).await, "completed");
    let stock = suite.stock("SKU-OK").await;
    assert_eq!((stock.available, stock.reserved), (8, 2));
    let account = suite.account("cust-ok").await;
    assert_eq!((account.credit, account.charged), (eur(8_000), eur(2_000)));
    wait_until(saga_e2e::SAGA_DEADLINE, || async {
        suite
            .shipment(run.approved)
            .await
            .is_some_and(|s| s.status == "dispatched")
    })
    .await
    .expect("the approved order's shipment is dispatched");

    // Out of stock: nothing reserved, nothing charged, nothing shipped.
    let order = suite.order(run.out_of_stock).await.unwrap();
    assert_eq!(order.status, "REJECTED");
    let reason = order.rejection_reason.unwrap_or_default();
    assert!(reason.starts_with("out of stock: SKU-SHORT"), "{reason}");
    assert_eq!(saga_state(suite, run.out_of_stock).await, "aborted");
    let stock = suite.stock("SKU-SHORT").await;
    assert_eq!((stock.available, stock.reserved), (1, 0));
    let account = suite.account("cust-short").await;
    assert_eq!((account.credit, account.charged), (eur(10_000), eur(0)));
    assert_eq!(suite.shipment(run.out_of_stock).await, None);
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1")
        .bind(run.out_of_stock.into_uuid())
        .fetch_one(suite.pool(Service::Payment))
        .await
        .unwrap();
    assert_eq!(charges, 0, "payment never heard of the out-of-stock order");

    // Payment declined: the reserved stock is released, nothing charged, nothing shipped.
    let order = suite.order(run.declined).await.unwrap();
    assert_eq!(order.status, "REJECTED");
    let reason = order.rejection_reason.unwrap_or_default();
    assert!(
        reason.starts_with("payment declined: INSUFFICIENT_CREDIT"),
        "{reason}"
    );
    assert_eq!(saga_state(suite, run.declined).await, "aborted");
    let stock = suite.stock("SKU-POOR").await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    let account = suite.account("cust-poor").await;
    assert_eq!((account.credit, account.charged), (eur(1_500), eur(0)));
    assert_eq!(suite.shipment(run.declined).await, None);
    let released: String =
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
            .bind(run.declined.into_uuid())
            .fetch_one(suite.pool(Service::Inventory))
            .await
            .unwrap();
    assert_eq!(
        released, "released",
        "the reservation was made, then released"
    );

    // Shipping refused: the payment is refunded (it was charged first) and stock released.
    let order = suite.order(run.refused).await.unwrap();
    assert_eq!(order.status, "REJECTED");
    let reason = order.rejection_reason.unwrap_or_default();
    assert!(reason.starts_with("shipment refused"), "{reason}");
    assert_eq!(saga_state(suite, run.refused).await, "aborted");
    let stock = suite.stock("SKU-FAR").await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    let account = suite.account("cust-far").await;
    assert_eq!((account.credit, account.charged), (eur(10_000), eur(0)));
    let (status, amount, refunded): (String, i64, i64) = sqlx::query_as(
        "SELECT status, amount_minor, refunded_minor FROM payments WHERE order_id = $1",
    )
    .bind(run.refused.into_uuid())
    .fetch_one(suite.pool(Service::Payment))
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), amount, refunded),
        ("refunded", 1_000, 1_000),
        "charged once, refunded once"
    );
    let shipment = suite
        .shipment(run.refused)
        .await
        .expect("a refused shipment");
    assert_eq!(shipment.status, "refused");

    // Dispatch only after approval: once shipping has consumed every order event, only the
    // approved order was dispatched, once.
    suite.wait_drained().await;
    assert_eq!(dispatched_orders(suite).await, vec![run.approved]);
    suite.assert_no_dead_letters().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_path_ends_in_the_right_state_with_the_right_side_effects() {
    let suite = Suite::start().await;
    let run = run_four_paths(&suite).await;
    check_four_paths(&suite, &run).await;
    suite.stop().await;
}
