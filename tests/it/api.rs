//! One pass through the order API of the running suite: validation errors, unknown order,
//! idempotency-key reuse (details are in the order service's own tests).

use saga_contracts::OrderId;
use saga_e2e::{Service, Suite, eur, order_body};
use serde_json::{Value, json};

async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        saga_service_kit::problem::CONTENT_TYPE
    );
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_api_through_the_running_suite() {
    let suite = Suite::start().await;
    suite.set_price("SKU-API", eur(990)).await;
    suite.seed_stock("SKU-API", 5).await;
    suite.set_credit("cust-api", eur(5_000)).await;

    // Every validation error is reported at once.
    let bad = json!({ "customer_id": "", "items": [], "shipping_address": {
        "name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "XX" } });
    let body = problem(suite.post_order(&bad, None).await, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    for field in ["customer_id", "items", "shipping_address.country"] {
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{field} in {body}"
        );
    }
    // An unknown SKU is a 422 too, and nothing reaches the saga.
    let unknown_sku = order_body("cust-api", &[("SKU-NOPE", 1)], "DE");
    problem(suite.post_order(&unknown_sku, None).await, 422).await;

    // Unknown order and unknown saga: 404 problem+json.
    let nobody = OrderId::new();
    let url = format!("{}/orders/{nobody}", suite.url(Service::Order));
    problem(suite.http().get(&url).send().await.unwrap(), 404).await;
    let url = format!("{}/sagas/{nobody}", suite.url(Service::Orchestrator));
    problem(suite.http().get(&url).send().await.unwrap(), 404).await;

    // The same key and body twice: one order, the same answer, one saga.
    let order = order_body("cust-api", &[("SKU-API", 2)], "DE");
    let first = suite.post_order(&order, Some("key-1")).await;
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.unwrap();
    let again = suite.post_order(&order, Some("key-1")).await;
    assert_eq!(again.status().as_u16(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    // The same key with another body is refused.
    let other = order_body("cust-api", &[("SKU-API", 1)], "DE");
    problem(suite.post_order(&other, Some("key-1")).await, 422).await;

    let order_id: OrderId = first["order_id"].as_str().unwrap().parse().unwrap();
    let view = suite.wait_final(order_id).await;
    assert_eq!(view.status, "APPROVED");
    assert_eq!(suite.account("cust-api").await.charged, eur(1_980));
    assert_eq!(suite.stock("SKU-API").await.reserved, 2);
    suite.wait_drained().await;
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(suite.pool(Service::Orchestrator))
        .await
        .unwrap();
    assert_eq!(sagas, 1, "one order, one saga");
    suite.stop().await;
}
