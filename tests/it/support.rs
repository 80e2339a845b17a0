//! Small checks several tests share.

use std::collections::HashMap;

use saga_contracts::OrderId;
use saga_e2e::{OrderView, Service, Suite};

/// The saga's `state` as GET /sagas/{order_id} reports it.
pub async fn saga_state(suite: &Suite, order_id: OrderId) -> String {
    let saga = suite.saga(order_id).await.expect("a saga for the order");
    saga["state"].as_str().unwrap_or_default().to_owned()
}

/// Every order with a ShipmentDispatched in shipping's outbox, once per message (so a
/// double dispatch shows as a repeated id), sorted.
pub async fn dispatched_orders(suite: &Suite) -> Vec<OrderId> {
    let mut ids: Vec<OrderId> = sqlx::query_scalar::<_, String>(
        "SELECT message_key FROM outbox WHERE message_type = 'ShipmentDispatched'",
    )
    .fetch_all(suite.pool(Service::Shipping))
    .await
    .unwrap()
    .into_iter()
    .map(|k| k.parse().unwrap())
    .collect();
    ids.sort();
    ids
}

/// What a batch of orders did to stock and money, to check conservation: the stock the
/// approved orders hold per SKU and the money they were charged per customer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    pub units: HashMap<String, i64>,
    pub charged: HashMap<String, i64>,
}

pub fn approved_holdings(orders: &[OrderView]) -> Holdings {
    let mut h = Holdings::default();
    for o in orders.iter().filter(|o| o.status == "APPROVED") {
        for line in &o.items {
            *h.units.entry(line.sku.clone()).or_default() += i64::from(line.quantity);
        }
        *h.charged.entry(o.customer_id.clone()).or_default() += o.total.amount_minor;
    }
    h
}

/// Stock and money are conserved and exactly what the approved orders hold: per SKU
/// `available + reserved` is the seeded amount and `reserved` is what approved orders took;
/// per customer `credit + charged` is the initial credit and `charged` what approved orders
/// cost (a double reservation or charge breaks these). And exactly the approved orders are
/// dispatched, once each.
pub async fn assert_conserved(
    suite: &Suite,
    orders: &[OrderView],
    stock: &[(&str, i64)],
    credit: &[(&str, i64)],
) {
    let held = approved_holdings(orders);
    for (sku, seeded) in stock {
        let s = suite.stock(sku).await;
        assert!(s.available >= 0 && s.reserved >= 0, "{sku}: {s:?}");
        assert_eq!(s.available + s.reserved, *seeded, "{sku}: stock conserved");
        assert_eq!(
            s.reserved,
            held.units.get(*sku).copied().unwrap_or(0),
            "{sku}: reserved = what approved orders hold"
        );
    }
    for (customer, initial) in credit {
        let a = suite.account(customer).await;
        assert!(a.credit.amount_minor >= 0, "{customer}: overdrawn {a:?}");
        assert_eq!(
            a.credit.amount_minor + a.charged.amount_minor,
            *initial,
            "{customer}: money conserved"
        );
        assert_eq!(
            a.charged.amount_minor,
            held.charged.get(*customer).copied().unwrap_or(0),
            "{customer}: charged = what approved orders cost"
        );
    }
    suite.wait_drained().await;
    let mut approved: Vec<OrderId> = orders
        .iter()
        .filter(|o| o.status == "APPROVED")
        .map(|o| o.order_id.parse().unwrap())
        .collect();
    approved.sort();
    assert_eq!(
        dispatched_orders(suite).await,
        approved,
        "exactly the approved orders are dispatched, once each"
    );
}
