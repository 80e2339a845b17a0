//! Every message delivered twice: the same outcomes, no effect applied twice.

use saga_e2e::{Service, Suite};

use crate::paths::{check_four_paths, run_four_paths};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_twice_gives_the_same_outcomes() {
    let suite = Suite::start().await;
    let duplicator = suite.start_duplicator();
    let run = run_four_paths(&suite).await;
    // Let the approved order's dispatch happen, then stop duplicating and let every
    // consumer work through the copies before the balances are checked.
    check_four_paths(&suite, &run).await;
    let duplicated = duplicator.stop().await;
    suite.wait_drained().await;
    check_four_paths(&suite, &run).await;

    // Every message is on its topic exactly twice, and every consumer group committed past
    // both copies (wait_drained), dropping the second in its inbox.
    let published: usize = duplicated.values().sum();
    let mut on_topics = 0;
    for topic in saga_kafka::topics::ALL {
        on_topics += suite.topic_size(topic).await;
    }
    assert_eq!(on_topics, 2 * published as i64, "{duplicated:?}");
    // Each group recorded each distinct message once in its inbox: half of what it read.
    let mut expected = 0;
    for (_, topic) in suite.consumer_groups() {
        expected += suite.topic_size(topic).await / 2;
    }
    let mut recorded = 0;
    for service in Service::ALL {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(suite.pool(service))
            .await
            .unwrap();
        recorded += n;
    }
    assert_eq!(recorded, expected, "one inbox row per message and group");
    suite.stop().await;
}
