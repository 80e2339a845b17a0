//! The whole App (consumers, relay, HTTP) through the real tansu broker and registry: an
//! OrderPlaced on Kafka starts a saga whose ReserveStock reaches Kafka; a StockUnavailable on
//! Kafka makes it reject the order; the OrderRejected on Kafka ends it.

use std::time::Duration;

use orchestrator_service::{App, SagaConfig};
use rdkafka::producer::FutureRecord;
use saga_consumer::{ConsumerConfig, Membership};
use saga_contracts::{Codec, Message, Metadata, OrderId, OrderRejected, StockUnavailable};
use saga_kafka::KafkaConfig;
use saga_service_kit::app::Components;
use saga_testkit::{TestStack, wait_until};
use sqlx::PgPool;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(60);

async fn produce<M: Message>(kafka: &KafkaConfig, codec: &Codec, msg: &M) {
    let payload = codec.encode(msg).await.unwrap();
    let key = msg.meta().order_id.to_string();
    let topic = kafka.topic(M::TOPIC);
    kafka
        .producer()
        .unwrap()
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// The delivered outbox row of `message_type` for the order, once the relay published it.
async fn delivered(pool: &PgPool, order_id: OrderId, message_type: &str) -> Vec<u8> {
    let query = || {
        sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT payload FROM outbox WHERE message_key = $1 AND message_type = $2 \
             AND delivered_at IS NOT NULL",
        )
        .bind(order_id.to_string())
        .bind(message_type)
    };
    wait_until(DEADLINE, || async {
        query().fetch_optional(pool).await.unwrap().is_some()
    })
    .await
    .unwrap_or_else(|e| panic!("{message_type} not published: {e}"));
    query().fetch_one(pool).await.unwrap()
}

async fn wait_state(pool: &PgPool, order_id: OrderId, state: &str) {
    wait_until(DEADLINE, || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM sagas WHERE order_id = $1")
            .bind(order_id.into_uuid())
            .fetch_optional(pool)
            .await
            .unwrap()
            .as_deref()
            == Some(state)
    })
    .await
    .unwrap_or_else(|e| panic!("saga never reached {state}: {e}"));
}

#[tokio::test]
async fn a_saga_runs_through_the_broker_from_order_placed_to_rejected() {
    let stack = TestStack::get().await;
    let registry = registry_url().await;
    let db = stack.fresh_database().await;
    let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    for topic in saga_contracts::topics::ALL
        .iter()
        .chain([&saga_contracts::topics::DEAD_LETTERS])
    {
        stack.create_topic(&format!("{prefix}{topic}"), 4).await;
    }
    let mut config = config(
        &db.url,
        &registry,
        SagaConfig {
            retry_task: false,
            ..SagaConfig::default()
        },
        Components::default(),
    );
    config.runtime.kafka = KafkaConfig {
        bootstrap_servers: stack.kafka_bootstrap().to_owned(),
        topic_prefix: prefix.clone(),
        ..KafkaConfig::default()
    };
    config.runtime.consumer = ConsumerConfig {
        membership: Membership::Assign,
        ..ConsumerConfig::new("orchestrator-wiring")
    };
    let kafka = config.runtime.kafka.clone();
    let app = App::build(config).await.unwrap();
    let pool = app.pool().clone();
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run(token.clone()));
    let codec = Codec::new(&registry);

    let placed = order_placed();
    let order_id = placed.meta.order_id;
    produce(&kafka, &codec, &placed).await;
    let reserve = delivered(&pool, order_id, "ReserveStock").await;
    let reserve: saga_contracts::InventoryCommand = codec.decode(&reserve).await.unwrap();
    let reserve_meta = saga_contracts::TopicMessage::meta(&reserve).clone();

    produce(
        &kafka,
        &codec,
        &StockUnavailable {
            meta: Metadata::caused_by(&reserve_meta),
            shortages: vec![],
        },
    )
    .await;
    let reject = delivered(&pool, order_id, "RejectOrder").await;
    let reject: saga_contracts::OrderCommand = codec.decode(&reject).await.unwrap();
    let saga_contracts::OrderCommand::RejectOrder(reject) = reject else {
        panic!("expected RejectOrder, got {reject:?}")
    };
    assert_eq!(reject.reason, "out of stock: ");
    wait_state(&pool, order_id, "aborting").await;

    produce(
        &kafka,
        &codec,
        &OrderRejected {
            meta: Metadata::caused_by(&reject.meta),
            reason: reject.reason.clone(),
        },
    )
    .await;
    wait_state(&pool, order_id, "aborted").await;

    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the App stops on the token")
        .unwrap()
        .unwrap();
}
