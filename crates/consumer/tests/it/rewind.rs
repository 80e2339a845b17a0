//! Reprocessing (`saga_consumer::rewind`) against the real broker and PostgreSQL: a
//! participant-like group rewound by an hour applies nothing twice (the inbox), reapply is
//! refused for it, and for a projection reapply applies exactly the chosen range again.

use std::collections::BTreeMap;

use saga_consumer::lag::group_lag;
use saga_consumer::rewind::{self, HandlerKind, Request, RewindError, Target};
use saga_outbox::RelayConfig;
use saga_testkit::wait_until;
use tokio_util::sync::CancellationToken;

use crate::support::*;

fn topic(env: &Env) -> String {
    env.kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS)
}

/// Committed offset per partition that has one.
async fn committed(env: &Env, group: &str) -> BTreeMap<i32, i64> {
    group_lag(&env.kafka, group, &topic(env))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|l| l.committed.map(|c| (l.partition, c)))
        .collect()
}

/// Runs a consumer of `group` until every message of the topic is applied or skipped
/// (its committed offsets reach the log end), then stops it.
async fn consume_to_end(env: &Env, group: &str) {
    let token = CancellationToken::new();
    let consumer = spawn_consumer(
        env,
        env.db.pool.clone(),
        consumer_config(group),
        RecordingHandler::default(),
        token.clone(),
    );
    wait_until(DEADLINE, || async {
        let lags = group_lag(&env.kafka, group, &topic(env)).await.unwrap();
        lags.iter()
            .all(|l| l.high_watermark == 0 || l.committed == Some(l.high_watermark))
    })
    .await
    .expect("the consumer committed every partition to its end");
    token.cancel();
    consumer.await.unwrap();
}

async fn inbox_rows(env: &Env, group: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer_group = $1")
        .bind(group)
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
}

fn request(env: &Env, group: &str, target: Target, handler: HandlerKind, reapply: bool) -> Request {
    Request {
        group: group.to_owned(),
        topic: topic(env),
        target,
        handler,
        reapply,
    }
}

#[tokio::test]
async fn rewinding_a_participant_group_by_an_hour_applies_nothing_twice() {
    let env = env().await;
    let orders = enqueue(&env, 4, 5).await;
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();
    let group = "rewound-participant";
    consume_to_end(&env, group).await;
    assert_eq!(count_effects(&env.db.pool).await, 20);
    let before = committed(&env, group).await;
    assert_eq!(before.values().sum::<i64>(), 20, "{before:?}");

    let by_an_hour = request(
        &env,
        group,
        Target::Time(chrono::Utc::now() - chrono::Duration::hours(1)),
        HandlerKind::Effects,
        false,
    );
    // The dry run says what would happen and changes nothing.
    let plan = rewind::plan(&env.kafka, Some(&env.db.pool), &by_an_hour)
        .await
        .unwrap();
    assert_eq!(plan.reprocessed(), 20, "{plan}");
    for p in &plan.partitions {
        if let Some(current) = p.current {
            assert_eq!(
                (p.target, p.already_applied),
                (Some(0), Some(current)),
                "{plan}"
            );
        }
    }
    assert_eq!(
        committed(&env, group).await,
        before,
        "a plan changed offsets"
    );
    println!("{plan}");

    let done = rewind::rewind(&env.kafka, Some(&env.db.pool), &by_an_hour)
        .await
        .unwrap();
    assert_eq!(done.reprocessed(), 20);
    let rewound = committed(&env, group).await;
    assert!(rewound.values().all(|&o| o == 0), "{rewound:?}");

    // The group runs over all 20 messages again; the inbox drops every one of them.
    consume_to_end(&env, group).await;
    assert_eq!(committed(&env, group).await, before);
    assert_eq!(count_effects(&env.db.pool).await, 20);
    assert_each_once_in_order(&env.db.pool, &orders, 5).await;
    assert_eq!(inbox_rows(&env, group).await, 20);
}

#[tokio::test]
async fn reapply_is_refused_for_a_participant_and_changes_nothing() {
    let env = env().await;
    enqueue(&env, 2, 3).await;
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();
    let group = "refused-participant";
    consume_to_end(&env, group).await;
    let before = committed(&env, group).await;

    let reapply = request(&env, group, Target::Offset(0), HandlerKind::Effects, true);
    let refused = rewind::rewind(&env.kafka, Some(&env.db.pool), &reapply).await;
    let Err(error @ RewindError::ReapplyRefused { .. }) = refused else {
        panic!("reapply for a participant was not refused: {refused:?}");
    };
    assert!(
        error.to_string().contains("not declared a projection"),
        "{error}"
    );
    assert_eq!(committed(&env, group).await, before);
    assert_eq!(inbox_rows(&env, group).await, 6);
    assert_eq!(count_effects(&env.db.pool).await, 6);
}

#[tokio::test]
async fn reapply_for_a_projection_reapplies_exactly_the_chosen_range() {
    let env = env().await;
    // One key: one partition, ten messages in order.
    let order = enqueue(&env, 1, 10).await[0];
    relay(&env, RelayConfig::default())
        .drain_once()
        .await
        .unwrap();
    let group = "fixed-projection";
    consume_to_end(&env, group).await;
    let (partition, sixth): (i32, i64) = sqlx::query_as(
        "SELECT i.kafka_partition, i.kafka_offset FROM inbox i JOIN effects e USING (message_id) \
         WHERE i.consumer_group = $1 AND e.n = 6",
    )
    .bind(group)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();

    // From the sixth message on: messages 6..=10 again, 1..=5 not.
    let range = request(
        &env,
        group,
        Target::Offset(sixth),
        HandlerKind::Projection,
        true,
    );
    let plan = rewind::plan(&env.kafka, Some(&env.db.pool), &range)
        .await
        .unwrap();
    println!("{plan}");
    assert_eq!(plan.reprocessed(), 5, "{plan}");
    let p = plan
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .unwrap();
    assert_eq!((p.target, p.already_applied), (Some(sixth), Some(5)));
    rewind::rewind(&env.kafka, Some(&env.db.pool), &range)
        .await
        .unwrap();
    assert_eq!(
        inbox_rows(&env, group).await,
        5,
        "inbox entries of 6..=10 cleared"
    );

    consume_to_end(&env, group).await;
    let applied: Vec<i32> =
        sqlx::query_scalar("SELECT n FROM effects WHERE order_id = $1 ORDER BY seq")
            .bind(order.as_uuid())
            .fetch_all(&env.db.pool)
            .await
            .unwrap();
    assert_eq!(applied, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 6, 7, 8, 9, 10]);
    assert_eq!(inbox_rows(&env, group).await, 10);
}
