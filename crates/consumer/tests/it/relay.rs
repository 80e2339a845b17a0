//! The outbox relay: crash safety, ordering with two relays, redelivery, polling fallback.

use std::time::Duration;

use saga_outbox::RelayConfig;
use saga_testkit::wait_until;
use tokio_util::sync::CancellationToken;

use crate::support::*;

#[tokio::test]
async fn relay_killed_mid_batch_after_commit_still_publishes_every_row_once_in_effect() {
    let env = env().await;
    let orders = enqueue(&env, 20, 100).await; // committed, nothing published yet
    let consumer_token = CancellationToken::new();
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config("crash"),
        RecordingHandler::default(),
        consumer_token.clone(),
    );

    // A relay with small batches, killed (task aborted: its transaction rolls back, so rows
    // it already published stay unmarked) once the consumer has seen part of the stream.
    let small = RelayConfig {
        batch_size: 50,
        ..RelayConfig::default()
    };
    let first = tokio::spawn(relay(&env, small.clone()).run(CancellationToken::new()));
    wait_until(DEADLINE, || async {
        count_effects(&env.db.pool).await >= 300
    })
    .await
    .expect("first relay published something");
    first.abort();
    let _ = first.await;

    // And a crash after Kafka acknowledged rows but before they were marked: unmark some.
    sqlx::query(
        "UPDATE outbox SET delivered_at = NULL WHERE id IN
           (SELECT id FROM outbox WHERE delivered_at IS NOT NULL ORDER BY id LIMIT 100)",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();

    // A new relay publishes what is left (and the unmarked rows again).
    let second = relay(&env, small);
    second.drain_once().await.unwrap();
    assert_eq!(second.stats().await.unwrap().pending, 0);

    wait_for_effects(&env.db.pool, 2000).await;
    assert_each_once_in_order(&env.db.pool, &orders, 100).await;
    consumer_token.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn ten_thousand_messages_over_fifty_keys_with_two_relays_keep_per_key_order() {
    let env = env().await;
    let token = CancellationToken::new();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                relay(
                    &env,
                    RelayConfig {
                        batch_size: 200,
                        poll_interval_ms: 50,
                        ..RelayConfig::default()
                    },
                )
                .run(token.clone()),
            )
        })
        .collect();
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config("two-relays"),
        RecordingHandler::default(),
        token.clone(),
    );
    // Enqueued while both relays run, so they compete for every batch.
    let orders = enqueue(&env, 50, 200).await;
    wait_for_effects(&env.db.pool, 10_000).await;
    assert_each_once_in_order(&env.db.pool, &orders, 200).await;
    token.cancel();
    for r in relays {
        r.await.unwrap().unwrap();
    }
    consumer.await.unwrap();
}

#[tokio::test]
async fn every_message_delivered_twice_is_applied_once() {
    let env = env().await;
    let orders = enqueue(&env, 10, 50).await;
    let relay = relay(&env, RelayConfig::default());
    assert_eq!(relay.drain_once().await.unwrap(), 500);
    // Forced redelivery: the whole outbox goes out a second time.
    sqlx::query("UPDATE outbox SET delivered_at = NULL")
        .execute(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(relay.drain_once().await.unwrap(), 500);

    let token = CancellationToken::new();
    let group = "twice";
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config(group),
        RecordingHandler::default(),
        token.clone(),
    );
    // Wait until the group has consumed all 1,000 records (lag 0), not just 500 effects.
    let topic = env.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS);
    let drained = wait_until(DEADLINE, || async {
        let lags = saga_consumer::lag::group_lag(&env.kafka, group, &topic)
            .await
            .unwrap();
        lags.iter().map(|l| l.high_watermark).sum::<i64>() == 1000
            && lags.iter().all(|l| l.lag == 0)
    })
    .await;
    assert!(drained.is_ok(), "consumer did not catch up");
    assert_eq!(count_effects(&env.db.pool).await, 500);
    assert_each_once_in_order(&env.db.pool, &orders, 50).await;
    let duplicates: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(duplicates, 500, "one inbox row per distinct message");
    token.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn lost_notifications_are_covered_by_polling() {
    let env = env().await;
    // No notification will ever arrive.
    sqlx::query("ALTER TABLE outbox DISABLE TRIGGER outbox_notify")
        .execute(&env.db.pool)
        .await
        .unwrap();
    let token = CancellationToken::new();
    let relay_task = tokio::spawn(
        relay(
            &env,
            RelayConfig {
                poll_interval_ms: 100,
                ..RelayConfig::default()
            },
        )
        .run(token.clone()),
    );
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config("polling"),
        RecordingHandler::default(),
        token.clone(),
    );
    let orders = enqueue(&env, 3, 10).await;
    wait_for_effects(&env.db.pool, 30).await;
    assert_each_once_in_order(&env.db.pool, &orders, 10).await;
    token.cancel();
    relay_task.await.unwrap().unwrap();
    consumer.await.unwrap();
}

#[tokio::test]
async fn stats_report_pending_rows_and_purge_keeps_undelivered_ones() {
    let env = env().await;
    enqueue(&env, 2, 5).await;
    let relay = relay(&env, RelayConfig::default());
    let before = relay.stats().await.unwrap();
    assert_eq!(before.pending, 10);
    assert!(before.oldest_pending_age > Duration::ZERO);

    relay.drain_once().await.unwrap();
    let after = relay.stats().await.unwrap();
    assert_eq!(after.pending, 0);
    assert_eq!(after.oldest_pending_age, Duration::ZERO);

    enqueue(&env, 1, 3).await; // pending again
    let purged = saga_outbox::relay::purge_delivered(&env.db.pool, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(purged, 10, "delivered rows purged");
    assert_eq!(relay.stats().await.unwrap().pending, 3, "pending rows kept");
}

/// Broker trouble must not hold a transaction open: the order projector's read-your-writes
/// waits for the xmin horizon, which any open transaction with an id holds back. A relay
/// waiting on an unreachable broker holds its lock on an idle session, nothing more.
#[tokio::test]
async fn relay_waiting_on_an_unreachable_broker_holds_no_transaction_open() {
    let env = env().await;
    enqueue(&env, 2, 3).await;
    let unreachable = saga_kafka::KafkaConfig {
        // Nothing listens there: every delivery waits until message.timeout.ms.
        bootstrap_servers: format!("127.0.0.1:{}", saga_stack::free_port().unwrap()),
        message_timeout_ms: 60_000,
        ..env.kafka.clone()
    };
    let stuck = saga_outbox::Relay::new(env.db.pool.clone(), &unreachable, RelayConfig::default())
        .expect("relay");
    let token = CancellationToken::new();
    let task = tokio::spawn(stuck.run(token.clone()));

    // The relay is mid-batch once its session holds the advisory lock.
    let lock_holder = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_optional(&env.db.pool)
        .await
        .unwrap()
    };
    wait_until(DEADLINE, || async { lock_holder().await.is_some() })
        .await
        .expect("the relay took its lock");
    let started = std::time::Instant::now();
    // Observe the batch for two seconds (it lasts until message.timeout.ms): at no point
    // does any session of this database keep a transaction open, the relay's included.
    while started.elapsed() < Duration::from_secs(2) {
        let holder = lock_holder().await.expect("still publishing");
        let (state, xid, xmin): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT state, backend_xid::text, backend_xmin::text
                 FROM pg_stat_activity WHERE pid = $1",
        )
        .bind(holder)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
        assert_eq!(state.as_deref(), Some("idle"), "relay session state");
        assert_eq!((xid, xmin), (None, None), "relay holds no xid or snapshot");
        let long_open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND xact_start < now() - interval '500 milliseconds'",
        )
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
        assert_eq!(long_open, 0, "a transaction stayed open during the publish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        saga_outbox::relay::stats(&env.db.pool)
            .await
            .unwrap()
            .pending,
        6,
        "nothing was marked delivered"
    );
    token.cancel();
    task.abort();
    let _ = task.await;
}

/// A handler's sends are staged and written by one statement before the commit: nothing is
/// in the table until the flush, then every row is, in send order (ids ascending), and the
/// relay publishes them like any other rows.
#[tokio::test]
async fn staged_sends_are_written_together_in_send_order_at_flush() {
    let env = env().await;
    let orders: Vec<saga_contracts::OrderId> =
        (0..5).map(|_| saga_contracts::OrderId::new()).collect();
    let mut tx = env.db.pool.begin().await.unwrap();
    let mut staged = saga_outbox::Tx::staged(&mut tx);
    for (i, order) in orders.iter().enumerate() {
        env.outbox
            .send(&mut staged, &message(*order, i as i32 + 1))
            .await
            .unwrap();
    }
    assert_eq!(staged.pending(), 5);
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(staged.conn())
        .await
        .unwrap();
    assert_eq!(before, 0, "staged rows are not written before the flush");
    assert_eq!(staged.flush().await.unwrap(), 5);
    assert_eq!(staged.pending(), 0);
    tx.commit().await.unwrap();

    let keys: Vec<String> = sqlx::query_scalar("SELECT message_key FROM outbox ORDER BY id")
        .fetch_all(&env.db.pool)
        .await
        .unwrap();
    let sent: Vec<String> = orders.iter().map(ToString::to_string).collect();
    assert_eq!(keys, sent, "ids follow send order");

    // A direct Tx writes at once.
    let late = saga_contracts::OrderId::new();
    let mut tx = env.db.pool.begin().await.unwrap();
    let mut direct = saga_outbox::Tx::direct(&mut tx);
    env.outbox
        .send(&mut direct, &message(late, 1))
        .await
        .unwrap();
    assert_eq!(direct.pending(), 0);
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_key = $1")
        .bind(late.to_string())
        .fetch_one(direct.conn())
        .await
        .unwrap();
    assert_eq!(written, 1);
    tx.commit().await.unwrap();

    let consumer_token = CancellationToken::new();
    let consumer = spawn_consumer(
        &env,
        env.db.pool.clone(),
        consumer_config("staged"),
        RecordingHandler::default(),
        consumer_token.clone(),
    );
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();
    wait_for_effects(&env.db.pool, 6).await;
    consumer_token.cancel();
    consumer.await.unwrap();
}
