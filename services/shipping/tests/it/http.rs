//! The shipment API over real HTTP.

use saga_contracts::OrderId;
use shipping_service::shipments::{self, ServedCountries};

use crate::support::{fresh_pool, problem, serve};

#[tokio::test]
async fn shows_a_shipment_and_refuses_bad_ids() {
    let pool = fresh_pool().await;
    let order = OrderId::new();
    let address = saga_contracts::Address {
        name: "N".into(),
        line1: "L".into(),
        line2: None,
        city: "C".into(),
        postal_code: "P".into(),
        country: "NL".into(),
    };
    let mut tx = pool.begin().await.unwrap();
    let served = ServedCountries::new(["NL"]).unwrap();
    shipments::schedule(&mut tx, order, &address, &[], &served)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (url, _stop) = serve(shipping_service::http::router(pool)).await;
    let client = reqwest::Client::new();

    let resp = client
        .get(format!("{url}/shipments/{order}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["order_id"], order.to_string());
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["country"], "NL");
    assert!(body["shipment_id"].is_string());

    let unknown = client
        .get(format!("{url}/shipments/{}", OrderId::new()))
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
    let bad = client
        .get(format!("{url}/shipments/not-a-uuid"))
        .send()
        .await
        .unwrap();
    let body = problem(bad, 400).await;
    assert_eq!(body["errors"][0]["field"], "order_id");
}
