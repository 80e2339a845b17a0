//! `GET /sagas/{id}` and `GET /sagas?state=` over real HTTP.

use orchestrator_service::SagaConfig;
use saga_contracts::{InventoryEvent, OrderEvent};
use serde_json::Value;

use crate::harness::*;

async fn serve(h: &Harness) -> (String, tokio_util::sync::CancellationToken) {
    // The App's own listener is consumed by `run`; a second router on another port serves
    // the same pool, which is what the test needs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    let router = orchestrator_service::http::router(h.pool.clone())
        .fallback(saga_service_kit::problem::not_found);
    tokio::spawn(saga_service_kit::http::serve(
        listener,
        router,
        token.clone(),
    ));
    (base, token)
}

#[tokio::test]
async fn a_saga_is_shown_by_order_id_and_by_saga_id_with_its_timeline() {
    let h = Harness::new(SagaConfig::default()).await;
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockReserved(stock_reserved(&reserve)))
        .await;
    let (base, token) = serve(&h).await;
    let client = reqwest::Client::new();

    let by_order: Value = client
        .get(format!("{base}/sagas/{}", placed.meta.order_id))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_order["state"], "running");
    assert_eq!(by_order["current_step"], "charge_payment");
    assert_eq!(
        by_order["completed_steps"],
        serde_json::json!(["reserve_stock"])
    );
    assert_eq!(by_order["data"]["customer_id"], "alice");
    let timeline = by_order["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0]["caused_by_type"], "OrderPlaced");
    assert_eq!(
        timeline[0]["caused_by_message_id"],
        placed.meta.message_id.to_string()
    );
    assert_eq!(timeline[0]["commands"][0]["type"], "ReserveStock");
    assert_eq!(timeline[1]["caused_by_type"], "StockReserved");
    assert_eq!(timeline[1]["commands"][0]["type"], "ChargePayment");

    let saga_id = by_order["saga_id"].as_str().unwrap();
    let by_saga: Value = client
        .get(format!("{base}/sagas/{saga_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_saga["order_id"], placed.meta.order_id.to_string());

    let missing = client
        .get(format!("{base}/sagas/{}", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let bad = client
        .get(format!("{base}/sagas/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    token.cancel();
}

#[tokio::test]
async fn sagas_are_listed_by_state_page_by_page() {
    let h = Harness::new(SagaConfig::default()).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let placed = order_placed();
        orders.push(placed.meta.order_id.to_string());
        h.order_event(OrderEvent::OrderPlaced(placed)).await;
    }
    // One of them moves on to aborting.
    let placed = order_placed();
    h.order_event(OrderEvent::OrderPlaced(placed.clone())).await;
    let reserve = h.last_command().await;
    h.inventory_event(InventoryEvent::StockUnavailable(
        saga_contracts::StockUnavailable {
            meta: saga_contracts::Metadata::caused_by(&reserve),
            shortages: vec![],
        },
    ))
    .await;
    let (base, token) = serve(&h).await;
    let client = reqwest::Client::new();

    let page1: Value = client
        .get(format!("{base}/sagas?state=running&limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = page1["next_after"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let page2: Value = client
        .get(format!("{base}/sagas?state=running&limit=2&after={after}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page2["next_after"].is_null());
    let listed: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|s| s["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, orders);

    let aborting: Value = client
        .get(format!("{base}/sagas?state=aborting"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(aborting["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        aborting["items"][0]["order_id"],
        placed.meta.order_id.to_string()
    );

    let bad = client
        .get(format!("{base}/sagas?state=paused"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    token.cancel();
}
