//! One trace id spans the saga: the `traceparent` of every message about one order, in
//! every service's outbox, carries the same trace id.

use std::collections::BTreeSet;

use saga_e2e::{Suite, eur};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_spans_the_saga() {
    let suite = Suite::start().await;
    suite.set_price("SKU-T", eur(100)).await;
    suite.seed_stock("SKU-T", 3).await;
    suite.set_credit("cust-t", eur(1_000)).await;
    let first = suite.place_order("cust-t", &[("SKU-T", 1)], "DE").await;
    let second = suite.place_order("cust-t", &[("SKU-T", 1)], "DE").await;
    suite.wait_all_final(&[first, second]).await;
    suite.wait_drained().await;

    let mut per_order = Vec::new();
    for order_id in [first, second] {
        let traced = suite.trace_ids(order_id).await;
        let types: BTreeSet<&str> = traced.iter().map(|(_, t, _)| t.as_str()).collect();
        // Every hop of the approved saga, including the dispatch after approval.
        for t in [
            "OrderPlaced",
            "ReserveStock",
            "StockReserved",
            "ChargePayment",
            "PaymentCharged",
            "ScheduleShipment",
            "ShipmentScheduled",
            "ApproveOrder",
            "OrderApproved",
            "ShipmentDispatched",
        ] {
            assert!(types.contains(t), "{t} missing: {traced:?}");
        }
        let ids: BTreeSet<Option<String>> = traced.iter().map(|(_, _, id)| id.clone()).collect();
        assert_eq!(ids.len(), 1, "one trace id per saga: {traced:?}");
        let id = ids.into_iter().next().unwrap();
        let id = id.unwrap_or_else(|| panic!("no traceparent: {traced:?}"));
        assert_ne!(id, "00000000000000000000000000000000");
        per_order.push(id);
    }
    assert_ne!(per_order[0], per_order[1], "each saga has its own trace");
    suite.stop().await;
}
