//! The whole service in-process on the real broker and registry: a command on
//! `inventory.commands` is answered on `inventory.events`.

use inventory_service::{App, Config};
use saga_contracts::ids::OrderId;
use saga_contracts::messages::inventory::{InventoryEvent, ReleaseStock, ReserveStock};
use saga_contracts::{Metadata, StockLine};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::Bus;
use crate::support::sku;

#[tokio::test]
async fn commands_on_the_topic_are_answered_on_the_events_topic() {
    let bus = Bus::new().await;
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    let config: Config = bus.config(&db.url, "inventory-it");
    let app = App::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    let put = reqwest::Client::new()
        .put(format!("{url}/stock/W-1"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .json(&json!({"available": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let order = OrderId::new();
    let reserve = ReserveStock {
        meta: Metadata::first(order),
        lines: vec![StockLine {
            sku: sku("W-1"),
            quantity: 2,
        }],
    };
    bus.send(&reserve).await;
    let reply = bus
        .wait_for(|e: &InventoryEvent| match e {
            InventoryEvent::StockReserved(r) if r.meta.order_id == order => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reply.meta.causation_id, Some(reserve.meta.message_id));
    assert_eq!(reply.meta.correlation_id, reserve.meta.correlation_id);

    let release = ReleaseStock {
        meta: Metadata::caused_by(&reply.meta),
    };
    bus.send(&release).await;
    let released = bus
        .wait_for(|e: &InventoryEvent| match e {
            InventoryEvent::StockReleased(r) if r.meta.order_id == order => Some(r.released),
            _ => None,
        })
        .await;
    assert!(released);

    let stock: serde_json::Value = reqwest::get(format!("{url}/stock/W-1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock, json!({"sku": "W-1", "available": 5, "reserved": 0}));

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// One `APP_CONSUMER__*` variable alone used to empty the consumer group id.
#[tokio::test]
async fn the_binary_starts_with_a_single_consumer_variable() {
    saga_runtime::testing::assert_starts_with_a_single_consumer_variable(env!(
        "CARGO_BIN_EXE_inventory-service"
    ))
    .await;
}

/// Dead-letter replay over HTTP is an admin route (saga-runtime): refused without the token;
/// with it, the service lists its own consumer group's dead letters and replays one to its
/// source topic.
#[tokio::test]
async fn dead_letters_are_listed_and_replayed_by_admins_only() {
    let bus = Bus::new().await;
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    let config: Config = bus.config(&db.url, "inventory-dlq-it");
    let app = App::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::new();

    // Bytes no codec can read: dead-lettered at once.
    let producer = bus.kafka.producer().unwrap();
    let topic = bus.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS);
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("poison")
                .payload(&b"not avro"[..]),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    for request in [
        http.get(format!("{url}/admin/dead-letters")),
        http.get(format!("{url}/admin/dead-letters"))
            .bearer_auth("not-the-admin-token-at-all"),
        http.post(format!("{url}/admin/dead-letters/0:0/replay")),
    ] {
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()["content-type"],
            saga_service_kit::problem::CONTENT_TYPE
        );
    }

    let list = || async {
        http.get(format!("{url}/admin/dead-letters"))
            .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json::<Vec<serde_json::Value>>()
            .await
            .unwrap()
    };
    let deadline = std::time::Duration::from_secs(60);
    saga_testkit::wait_until(deadline, || async { !list().await.is_empty() })
        .await
        .expect("the poison message is dead-lettered");
    let letters = list().await;
    assert_eq!(
        letters[0]["headers"]["dlq.consumer.group"],
        "inventory-dlq-it"
    );
    let id = letters[0]["id"].as_str().unwrap().to_owned();

    let replayed = http
        .post(format!("{url}/admin/dead-letters/{id}/replay"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let body: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(body["replayed"], id.as_str());
    assert_eq!(body["topic"], topic.as_str());
    // Still poison: the replay is consumed again and comes back as a second dead letter.
    saga_testkit::wait_until(deadline, || async { list().await.len() >= 2 })
        .await
        .expect("the replayed message was consumed again");

    let unknown = http
        .post(format!("{url}/admin/dead-letters/3:999999/replay"))
        .bearer_auth(saga_runtime::testing::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
