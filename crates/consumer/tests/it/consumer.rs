//! The consumer runtime: poison messages, retries, dead letters and replay, an unreachable
//! database, a consumer killed mid-batch.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use saga_consumer::dead_letters::{self, DeadLetter};
use saga_contracts::OrderId;
use saga_outbox::RelayConfig;
use saga_testkit::wait_until;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Produce raw bytes for `order` to the test's inventory.commands topic.
async fn produce_raw(env: &Env, order: OrderId, payload: &[u8]) {
    let producer = env.kafka.producer().unwrap();
    let topic = env.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS);
    let key = order.to_string();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produce");
}

async fn dead_letters_of(env: &Env, group: &str) -> Vec<DeadLetter> {
    let topic = env.kafka.topic(saga_kafka::topics::DEAD_LETTERS);
    dead_letters::list(&env.kafka, &topic)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.header(dead_letters::CONSUMER_GROUP) == Some(group))
        .collect()
}

#[tokio::test]
async fn poison_messages_go_to_dead_letters_with_their_error_and_the_partition_moves_on() {
    let env = env().await;
    let order = OrderId::new();
    let codec = env.codec.clone();
    let valid = |n| {
        let codec = codec.clone();
        async move { codec.encode(&message(order, n)).await }
    };
    let mut unknown_schema = vec![0u8, 0x7f, 0xff, 0xff, 0x00];
    unknown_schema.extend_from_slice(b"\x02\x04");

    // One key, so one partition: valid, bad magic byte, valid, unknown schema id, valid,
    // refused by the handler, valid.
    produce_raw(&env, order, &valid(1).await.unwrap()).await;
    produce_raw(&env, order, b"\x01not avro at all").await;
    produce_raw(&env, order, &valid(2).await.unwrap()).await;
    produce_raw(&env, order, &unknown_schema).await;
    produce_raw(&env, order, &valid(3).await.unwrap()).await;
    produce_raw(&env, order, &valid(-1).await.unwrap()).await;
    produce_raw(&env, order, &valid(4).await.unwrap()).await;

    let token = CancellationToken::new();
    let group = "poison";
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        RecordingHandler::default(),
        token.clone(),
    );
    wait_for_effects(&env.db.pool, 4).await;
    assert_each_once_in_order(&env.db.pool, &[order], 4).await;

    wait_until(DEADLINE, || async {
        dead_letters_of(&env, group).await.len() == 3
    })
    .await
    .expect("three dead letters");
    let letters = dead_letters_of(&env, group).await;
    let kinds: Vec<_> = letters
        .iter()
        .map(|l| l.header(dead_letters::KIND).unwrap())
        .collect();
    assert_eq!(kinds, ["decode", "decode", "handler"]);
    let offsets: Vec<_> = letters
        .iter()
        .map(|l| l.header(dead_letters::SOURCE_OFFSET).unwrap())
        .collect();
    assert_eq!(
        offsets,
        ["1", "3", "5"],
        "the source offsets of the poison messages"
    );
    assert!(
        letters[0].error().unwrap().to_lowercase().contains("magic"),
        "{:?}",
        letters[0].error()
    );
    assert!(
        letters[1].error().unwrap().contains("2147483392")
            || letters[1]
                .error()
                .unwrap()
                .to_lowercase()
                .contains("schema"),
        "{:?}",
        letters[1].error()
    );
    assert!(letters[2].error().unwrap().contains("negative"));
    let source_topic = env.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS);
    for l in &letters {
        assert_eq!(l.source_topic(), Some(source_topic.as_str()));
        assert_eq!(l.key.as_deref(), Some(order.to_string().as_str()));
        assert!(l.header(dead_letters::ATTEMPTS).is_some());
        assert!(l.header(dead_letters::FAILED_AT).is_some());
    }
    assert_eq!(
        letters[0].payload.as_deref(),
        Some(&b"\x01not avro at all"[..]),
        "original bytes kept"
    );
    token.cancel();
    consumer.await.unwrap();
}

/// A handler bug that panics once must not stall its partition silently: the runtime
/// catches the panic (counted in `consumer_handler_panics_total`, logged as an error), rolls
/// the attempt back and retries; every message is then applied once, in order.
#[tokio::test]
async fn a_handler_that_panics_once_does_not_stall_its_partition() {
    let env = env().await;
    let handler = RecordingHandler::default();
    handler.panic_once.store(true, Ordering::SeqCst);
    let token = CancellationToken::new();
    let group = "panics-once";
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        handler.clone(),
        token.clone(),
    );
    let orders = enqueue(&env, 3, 5).await;
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();

    wait_for_effects(&env.db.pool, 15).await;
    assert!(
        !handler.panic_once.load(Ordering::SeqCst),
        "the handler did panic"
    );
    assert_each_once_in_order(&env.db.pool, &orders, 5).await;
    assert!(
        dead_letters_of(&env, group).await.is_empty(),
        "one panic is retried, not dead-lettered"
    );
    token.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn transient_failures_are_retried_then_dead_lettered_and_a_replay_applies_once() {
    let env = env().await;
    let handler = RecordingHandler::default();
    handler.fail_transiently.store(true, Ordering::SeqCst);
    let token = CancellationToken::new();
    let group = "transient";
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        handler.clone(),
        token.clone(),
    );
    let orders = enqueue(&env, 1, 1).await;
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();

    wait_until(DEADLINE, || async {
        !dead_letters_of(&env, group).await.is_empty()
    })
    .await
    .expect("dead letter after retries");
    let letters = dead_letters_of(&env, group).await;
    assert_eq!(
        letters[0].header(dead_letters::KIND),
        Some("retries_exhausted")
    );
    assert_eq!(letters[0].header(dead_letters::ATTEMPTS), Some("3"));
    assert_eq!(count_effects(&env.db.pool).await, 0);

    // The cause is fixed; replay the dead letter twice: applied once.
    handler.fail_transiently.store(false, Ordering::SeqCst);
    dead_letters::replay(&env.kafka, &letters[0]).await.unwrap();
    dead_letters::replay(&env.kafka, &letters[0]).await.unwrap();
    wait_for_effects(&env.db.pool, 1).await;
    let topic = env.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS);
    wait_until(DEADLINE, || async {
        saga_consumer::lag::group_lag(&env.kafka, group, &topic)
            .await
            .unwrap()
            .iter()
            .all(|l| l.lag == 0)
    })
    .await
    .expect("replays consumed");
    assert_each_once_in_order(&env.db.pool, &orders, 1).await;
    token.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn database_down_for_a_while_retries_skips_nothing_and_catches_up() {
    let env = env().await;
    let proxy = Proxy::start(pg_socket(&env.db.url)).await;
    let proxied_url = env.db.url.replacen(
        &pg_socket(&env.db.url).port().to_string(),
        &proxy.addr.port().to_string(),
        1,
    );
    let consumer_pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&proxied_url)
        .await
        .unwrap();
    let token = CancellationToken::new();
    let consumer = spawn_consumer(
        &env,
        consumer_pool,
        consumer_config("db-down"),
        RecordingHandler::default(),
        token.clone(),
    );
    let relay = relay(&env, RelayConfig::default());

    let first = enqueue(&env, 5, 20).await;
    relay.drain_once().await.unwrap();
    wait_for_effects(&env.db.pool, 100).await;

    proxy.cut();
    let second = enqueue(&env, 5, 20).await;
    relay.drain_once().await.unwrap();
    // The consumer keeps trying to reach its database while it is down.
    wait_until(DEADLINE, || async { proxy.refused() >= 3 })
        .await
        .expect("consumer retried against the unreachable database");
    assert_eq!(
        count_effects(&env.db.pool).await,
        100,
        "nothing applied while down"
    );
    proxy.restore();

    wait_for_effects(&env.db.pool, 200).await;
    assert_each_once_in_order(&env.db.pool, &first, 20).await;
    assert_each_once_in_order(&env.db.pool, &second, 20).await;
    let dead = dead_letters_of(&env, "db-down").await;
    assert!(
        dead.is_empty(),
        "an outage is not a reason to dead-letter: {dead:?}"
    );
    token.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn consumer_killed_mid_batch_and_restarted_loses_nothing_and_applies_nothing_twice() {
    let env = env().await;
    let orders = enqueue(&env, 5, 400).await;
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();

    let group = "killed";
    let first = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        RecordingHandler::default(),
        CancellationToken::new(),
    );
    wait_until(DEADLINE, || async {
        count_effects(&env.db.pool).await >= 200
    })
    .await
    .expect("first consumer made progress");
    // Killed: no graceful shutdown, in-flight transactions roll back, stored offsets that
    // were not yet committed are lost.
    first.abort();
    let _ = first.await;
    let at_kill = count_effects(&env.db.pool).await;
    assert!(at_kill < 2000, "killed before finishing ({at_kill})");

    let token = CancellationToken::new();
    let second = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        RecordingHandler::default(),
        token.clone(),
    );
    wait_for_effects(&env.db.pool, 2000).await;
    assert_each_once_in_order(&env.db.pool, &orders, 400).await;
    token.cancel();
    second.await.unwrap();
}

/// The batch claim (one statement for a consumer's batch) answers exactly as one claim per
/// message would: new ids are `New`, ids claimed before are `Duplicate`, an id repeated
/// inside the batch is `New` once and `Duplicate` after, and nothing is claimed if the
/// transaction rolls back.
#[tokio::test]
async fn a_batch_claim_answers_like_one_claim_per_message() {
    use saga_inbox::{Claim, Inbox, Source};
    let env = env().await;
    let inbox = Inbox::new("batch-claim");
    let source = |offset| Source {
        topic: "t",
        partition: 0,
        offset,
    };
    let (a, b, c) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );

    let mut tx = env.db.pool.begin().await.unwrap();
    assert_eq!(
        inbox.record(&mut tx, a, source(0)).await.unwrap(),
        Claim::New
    );
    tx.commit().await.unwrap();

    // Rolled back: `c` must still be new afterwards.
    let mut tx = env.db.pool.begin().await.unwrap();
    let claims = inbox
        .record_batch(&mut tx, &[(c, source(9))])
        .await
        .unwrap();
    assert_eq!(claims, [Claim::New]);
    tx.rollback().await.unwrap();

    let mut tx = env.db.pool.begin().await.unwrap();
    let claims = inbox
        .record_batch(
            &mut tx,
            &[
                (b, source(1)),
                (a, source(2)),
                (b, source(3)),
                (c, source(4)),
            ],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        claims,
        [Claim::New, Claim::Duplicate, Claim::Duplicate, Claim::New]
    );
    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT message_id, kafka_offset FROM inbox WHERE consumer_group = 'batch-claim'",
    )
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    let mut rows = rows;
    rows.sort_by_key(|(_, offset)| *offset);
    assert_eq!(
        rows,
        [(a, 0), (b, 1), (c, 4)],
        "one row per id, the first delivery's"
    );
}
