//! Many concurrent orders competing for scarce stock and credit: never oversold or
//! overdrawn, and stock and money are conserved.

use futures::future::join_all;
use saga_e2e::{Suite, eur};

use crate::support::assert_conserved;

pub const SKUS: [(&str, i64); 2] = [("SKU-RARE", 12), ("SKU-SCARCE", 9)];
pub const CUSTOMERS: [(&str, i64); 4] = [
    ("cust-a", 5_000),
    ("cust-b", 3_000),
    ("cust-c", 8_000),
    ("cust-d", 2_000),
];

/// Seeds [`SKUS`] (price 500 and 700) and [`CUSTOMERS`].
pub async fn seed(suite: &Suite) {
    suite.set_price("SKU-RARE", eur(500)).await;
    suite.set_price("SKU-SCARCE", eur(700)).await;
    for (sku, n) in SKUS {
        suite.seed_stock(sku, n).await;
    }
    for (customer, credit) in CUSTOMERS {
        suite.set_credit(customer, eur(credit)).await;
    }
}

/// Order `i` of a batch: varying customers, quantities and SKU order (both lock orders).
pub fn order_items(i: usize) -> (&'static str, Vec<(&'static str, i32)>) {
    let customer = CUSTOMERS[i % CUSTOMERS.len()].0;
    let q = (i % 3) as i32 + 1;
    let items = match i % 3 {
        0 => vec![("SKU-RARE", q)],
        1 => vec![("SKU-SCARCE", q), ("SKU-RARE", 1)],
        _ => vec![("SKU-RARE", 1), ("SKU-SCARCE", q)],
    };
    (customer, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_never_oversell_or_overdraw() {
    let suite = Suite::start().await;
    seed(&suite).await;
    const ORDERS: usize = 60;
    let placed = join_all((0..ORDERS).map(|i| {
        let suite = &suite;
        async move {
            let (customer, items) = order_items(i);
            suite.place_order(customer, &items, "NL").await
        }
    }))
    .await;
    let orders = suite.wait_all_final(&placed).await;

    let approved = orders.iter().filter(|o| o.status == "APPROVED").count();
    // Demand is well above supply: both outcomes must occur for the test to mean anything.
    assert!(approved > 0, "some orders are approved");
    assert!(approved < ORDERS, "scarcity rejects some orders");
    assert_conserved(&suite, &orders, &SKUS, &CUSTOMERS).await;
    suite.assert_no_dead_letters().await;
    suite.stop().await;
}
