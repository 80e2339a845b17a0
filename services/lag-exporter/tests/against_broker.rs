//! The exporter against the truth on the real broker (the test stack's tansu): messages
//! produced while the consumer is down are exactly its lag, on the partitions they went to;
//! after a SIGKILL the lag keeps growing, in messages and in seconds, and the group turns
//! STALLED then STOPPED; after a restart it is back to 0 and OK.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lag_exporter::{App, Config, GroupLag, GroupStatus, LagConfig};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_kafka::KafkaConfig;
use saga_testkit::{TestStack, wait_until};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

fn consumer(bootstrap: &str, group: &str, topic: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lag-test-consumer"))
        .args([bootstrap, group, topic])
        .stdout(Stdio::null())
        .spawn()
        .expect("start lag-test-consumer")
}

async fn produce(producer: &FutureProducer, topic: &str, partition: i32, n: usize) {
    for i in 0..n {
        let payload = format!("m{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

async fn report(http: &reqwest::Client, url: &str, group: &str) -> Option<GroupLag> {
    let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let groups: Vec<GroupLag> = serde_json::from_value(body["groups"].clone()).ok()?;
    groups.into_iter().find(|g| g.group == group)
}

fn lags(g: &GroupLag) -> Vec<i64> {
    let mut parts: Vec<_> = g.partitions.iter().map(|p| (p.partition, p.lag)).collect();
    parts.sort();
    parts.into_iter().map(|(_, l)| l).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_from_the_broker_follows_a_killed_and_restarted_consumer() {
    let stack = TestStack::get().await;
    let bootstrap = stack.kafka_bootstrap().to_owned();
    let unique = format!("lagx{}-", std::process::id());
    let topic = format!("{unique}orders");
    let group = format!("{unique}reader");
    let kafka = KafkaConfig {
        bootstrap_servers: bootstrap.clone(),
        ..KafkaConfig::default()
    };
    saga_kafka::admin::ensure_topics(&kafka, &[(topic.as_str(), 4)])
        .await
        .expect("create topic");
    let app = App::build(Config {
        kafka: kafka.clone(),
        lag: LagConfig {
            poll_interval_ms: 200,
            // Also named: a group that only commits (assign(), no JoinGroup) need not be in
            // the broker's ListGroups answer.
            groups: vec![group.clone()],
            group_prefix: unique.clone(),
            topic_prefix: unique.clone(),
            stall_after_secs: 1.0,
            stop_after_secs: 3.0,
            ..LagConfig::default()
        },
        ..Config::default()
    })
    .await
    .expect("build exporter");
    let base = format!("http://{}", app.local_addr());
    let url = format!("{base}/lag");
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::new();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");

    // A live consumer commits what arrives: the group appears (ListGroups) with no lag.
    let mut child = consumer(&bootstrap, &group, &topic);
    produce(&producer, &topic, 0, 3).await;
    wait_until(DEADLINE, || async {
        report(&http, &url, &group)
            .await
            .is_some_and(|g| g.lag_sum == 0 && g.partitions.iter().any(|p| p.committed == Some(3)))
    })
    .await
    .unwrap_or_else(|e| {
        panic!("the running consumer is seen with lag 0: {e:?}");
    });

    // SIGKILL, then 5 messages to partition 1 and 2 to partition 3.
    child.kill().expect("SIGKILL the consumer");
    child.wait().expect("reap");
    produce(&producer, &topic, 1, 5).await;
    produce(&producer, &topic, 3, 2).await;
    wait_until(DEADLINE, || async {
        report(&http, &url, &group)
            .await
            .is_some_and(|g| lags(&g) == [0, 5, 0, 2] && g.lag_sum == 7)
    })
    .await
    .expect("exactly the produced messages are the lag, on their partitions");

    // Lag in seconds grows with wall time while nobody consumes.
    let first = report(&http, &url, &group).await.unwrap();
    let started = Instant::now();
    let first_secs = first.max_lag_seconds;
    wait_until(DEADLINE, || async {
        report(&http, &url, &group)
            .await
            .is_some_and(|g| g.max_lag_seconds >= first_secs + 1.5)
    })
    .await
    .expect("lag seconds grow");
    let later = report(&http, &url, &group).await.unwrap();
    // It grows with the clock, not faster (one poll interval of slack).
    assert!(
        later.max_lag_seconds - first_secs <= started.elapsed().as_secs_f64() + 0.5,
        "{} -> {} in {:?}",
        first_secs,
        later.max_lag_seconds,
        started.elapsed()
    );

    // Burrow's evaluation: STALLED, then STOPPED; new messages keep adding to the lag.
    wait_until(DEADLINE, || async {
        report(&http, &url, &group)
            .await
            .is_some_and(|g| g.status == GroupStatus::Stopped)
    })
    .await
    .expect("the group is STOPPED");
    produce(&producer, &topic, 1, 4).await;
    wait_until(DEADLINE, || async {
        report(&http, &url, &group)
            .await
            .is_some_and(|g| lags(&g) == [0, 9, 0, 2] && g.status == GroupStatus::Stopped)
    })
    .await
    .expect("the dead consumer's lag keeps growing");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("kafka_consumergroup_lag{{group=\"{group}\",topic=\"{topic}\",partition=\"1\"}} 9"),
        format!("kafka_consumergroup_lag_sum{{group=\"{group}\"}} 11"),
        format!("kafka_consumergroup_status{{group=\"{group}\",status=\"STOPPED\"}} 1"),
    ] {
        assert!(
            metrics.contains(&line),
            "{line} not in /metrics:\n{metrics}"
        );
    }

    // Restarted: it resumes from the committed offsets and catches up.
    let mut child = consumer(&bootstrap, &group, &topic);
    wait_until(DEADLINE, || async {
        report(&http, &url, &group).await.is_some_and(|g| {
            g.lag_sum == 0 && g.status == GroupStatus::Ok && g.max_lag_seconds == 0.0
        })
    })
    .await
    .expect("lag back to 0 and OK after the restart");
    child.kill().expect("stop the consumer");
    child.wait().expect("reap");
    shutdown.cancel();
    served.await.unwrap().unwrap();
}
