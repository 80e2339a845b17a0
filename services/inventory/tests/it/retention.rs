//! The inbox purge the runtime schedules (`retention.inbox_hours`): rows past retention go,
//! younger ones stay.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::fresh_pool;

#[tokio::test]
async fn the_scheduled_inbox_purge_deletes_only_rows_past_retention() {
    let pool = fresh_pool().await;
    for (offset, age_hours) in [(1_i64, 200_i32), (2, 100), (3, 1)] {
        sqlx::query(
            "INSERT INTO inbox (consumer_group, message_id, topic, kafka_partition, kafka_offset,
                                received_at)
             VALUES ('g', gen_random_uuid(), 't', 0, $1, now() - make_interval(hours => $2))",
        )
        .bind(offset)
        .bind(age_hours)
        .execute(&pool)
        .await
        .unwrap();
    }
    let token = CancellationToken::new();
    let purge = tokio::spawn(saga_inbox::run_retention(
        pool.clone(),
        Duration::from_secs(saga_runtime::RetentionConfig::default().inbox_hours * 3600),
        Duration::from_millis(20),
        token.clone(),
    ));
    let remaining = || async {
        let offsets: Vec<(i64,)> =
            sqlx::query_as("SELECT kafka_offset FROM inbox ORDER BY kafka_offset")
                .fetch_all(&pool)
                .await
                .unwrap();
        offsets.into_iter().map(|(o,)| o).collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while remaining().await.len() == 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 200 h is past the default 7 days (168 h); 100 h and 1 h are not.
    assert_eq!(remaining().await, vec![2, 3]);
    token.cancel();
    purge.await.unwrap();
}
