//! Each path of the saga ends in the right state with the right side effects.

use saga_e2e::{Suite, eur};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_order_takes_stock_charges_and_ships() {
    let suite = Suite::start().await;
    suite.set_price("SKU-A", eur(1_250)).await;
    suite.seed_stock("SKU-A", 10).await;
    suite.set_credit("cust-1", eur(10_000)).await;

    let order_id = suite.place_order("cust-1", &[("SKU-A", 3)], "DE").await;
    let order = suite.wait_final(order_id).await;
    assert_eq!(order.status, "APPROVED", "{order:?}");
    assert_eq!(order.total.amount_minor, 3_750);

    let stock = suite.stock("SKU-A").await;
    assert_eq!((stock.available, stock.reserved), (7, 3));
    let account = suite.account("cust-1").await;
    assert_eq!(account.credit, eur(6_250));
    assert_eq!(account.charged, eur(3_750));
    suite.stop().await;
}
