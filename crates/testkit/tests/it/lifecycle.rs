//! The stack's own life: up, status, up again, down, up again; a busy port; a broker killed
//! with SIGKILL keeping its data and committed offsets.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use saga_stack::{
    Broker, Health, ProcessState, Stack, StackConfig, StackError, Topics, UpOutcome, is_alive,
};
use saga_testkit::{PrivateStack, wait_until};
use sqlx::{Connection, PgConnection};

fn pid_of(report: &[(String, UpOutcome)], name: &str) -> Option<u32> {
    report
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, o)| match o {
            UpOutcome::Started { pid } | UpOutcome::AlreadyRunning { pid } => *pid,
            UpOutcome::RestartedAfterStalePid { pid, .. } => Some(*pid),
            UpOutcome::Skipped(_) => None,
        })
}

#[tokio::test]
async fn up_status_down_up_again() {
    let private = PrivateStack::start().await.unwrap();
    let stack = private.stack();
    let cfg = stack.config().clone();

    for status in stack.status().await.unwrap() {
        if status.disabled.is_none() {
            assert_eq!(status.health, Health::Healthy, "{}", status.name);
        }
    }
    let pg_pid = stack.pid("postgres").unwrap().expect("postgres pid");
    let broker_pid = stack.pid("broker").unwrap().expect("broker pid");

    // `up` while up: harmless, same processes.
    let again = stack.up().await.unwrap();
    assert_eq!(
        again.iter().find(|(n, _)| n == "postgres").map(|(_, o)| o),
        Some(&UpOutcome::AlreadyRunning { pid: Some(pg_pid) })
    );
    assert_eq!(pid_of(&again, "broker"), Some(broker_pid));

    let mut admin = PgConnection::connect(&cfg.pg_admin_url()).await.unwrap();
    sqlx::query("CREATE DATABASE survives_restart")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    let down = stack.down().await.unwrap();
    assert!(down.contains(&("postgres".to_owned(), ProcessState::Running(pg_pid))));
    assert!(down.contains(&("broker".to_owned(), ProcessState::Running(broker_pid))));
    assert!(
        !is_alive(pg_pid) && !is_alive(broker_pid),
        "down stops the processes"
    );
    for port in [cfg.pg_port, cfg.kafka_port] {
        std::net::TcpListener::bind((cfg.host.as_str(), port))
            .unwrap_or_else(|e| panic!("port {port} free after down: {e}"));
    }
    let status = stack.status().await.unwrap();
    for name in ["postgres", "broker"] {
        let s = status.iter().find(|s| s.name == name).unwrap();
        assert_eq!(s.process, Some(ProcessState::NotRunning), "{name}");
        assert!(!s.health.is_healthy());
    }
    // A second `down` has nothing left to stop.
    let down_again = stack.down().await.unwrap();
    assert!(
        down_again
            .iter()
            .all(|(_, s)| *s == ProcessState::NotRunning)
    );

    let up = stack.up().await.unwrap();
    let new_pg = pid_of(&up, "postgres").unwrap();
    assert!(matches!(
        up.iter().find(|(n, _)| n == "postgres").unwrap().1,
        UpOutcome::Started { .. }
    ));
    assert_ne!(new_pg, pg_pid);
    let mut admin = PgConnection::connect(&cfg.pg_admin_url()).await.unwrap();
    let kept: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'survives_restart')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(kept, "data survives down + up");
    admin.close().await.unwrap();
    for status in stack.status().await.unwrap() {
        if status.disabled.is_none() {
            assert_eq!(
                status.health,
                Health::Healthy,
                "{} after up again",
                status.name
            );
        }
    }
    private.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_taken_port_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mut cfg = StackConfig::private(dir.path()).unwrap();
    cfg.kafka_port = squatter.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let err = Stack::empty(cfg).push(Broker).up().await.unwrap_err();
    assert!(
        matches!(&err, StackError::PortInUse { component, .. } if component == "broker"),
        "{err}"
    );
    assert!(err.to_string().contains("already in use"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn partitions(topic: &str) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition(topic, p);
    }
    list
}

#[tokio::test]
async fn broker_killed_with_sigkill_keeps_messages_and_committed_offsets() {
    let private = PrivateStack::start_with(|cfg| Stack::empty(cfg).push(Broker).push(Topics))
        .await
        .unwrap();
    let stack = private.stack();
    let bootstrap = stack.config().kafka_bootstrap();
    let topic = "restart-probe";
    saga_stack::create_topics(&bootstrap, &[(topic, 4)])
        .await
        .unwrap();

    let producer: FutureProducer = saga_stack::kafka_client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    for seq in 0..100 {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&format!("k{}", seq % 10))
                    .payload(&seq.to_string()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    drop(producer);

    // Read everything with assign() (the mode that survives restarts on tansu), commit half
    // of each partition.
    let group = "restart-probe-group";
    let consumer: BaseConsumer = saga_stack::kafka_client_config(&bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut start = partitions(topic);
    start.set_all_offsets(Offset::Beginning).unwrap();
    consumer.assign(&start).unwrap();
    let mut seen: HashMap<i32, Vec<(i64, String)>> = HashMap::new();
    let mut total = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while total < 100 {
        assert!(std::time::Instant::now() < deadline, "read {total} of 100");
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.unwrap();
            let payload = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
            seen.entry(msg.partition())
                .or_default()
                .push((msg.offset(), payload));
            total += 1;
        }
    }
    let mut commit = TopicPartitionList::new();
    let mut committed = HashMap::new();
    for (p, msgs) in &seen {
        let next = msgs[msgs.len() / 2].0;
        commit
            .add_partition_offset(topic, *p, Offset::Offset(next))
            .unwrap();
        committed.insert(*p, next);
    }
    consumer.commit(&commit, CommitMode::Sync).unwrap();
    drop(consumer);

    let pid = stack.pid("broker").unwrap().expect("broker running");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_until(Duration::from_secs(10), || async { !is_alive(pid) })
        .await
        .unwrap();
    let outcome = stack.up_component("broker").await.unwrap();
    assert_eq!(
        outcome,
        UpOutcome::RestartedAfterStalePid {
            stale_pid: pid,
            pid: stack.pid("broker").unwrap().unwrap()
        }
    );

    // The restarted consumer: committed offsets are back, and resuming from them yields
    // exactly the uncommitted messages.
    let consumer: BaseConsumer = saga_stack::kafka_client_config(&bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let back = consumer
        .committed_offsets(partitions(topic), Duration::from_secs(10))
        .unwrap();
    let mut resume = TopicPartitionList::new();
    for e in back.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(committed[&e.partition()]),
            "partition {}",
            e.partition()
        );
        let (_, high) = consumer
            .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            high,
            seen[&e.partition()].last().unwrap().0 + 1,
            "messages kept"
        );
        resume
            .add_partition_offset(topic, e.partition(), e.offset())
            .unwrap();
    }
    consumer.assign(&resume).unwrap();
    let expected: Vec<String> = seen
        .iter()
        .flat_map(|(p, msgs)| {
            msgs.iter()
                .filter(|(o, _)| *o >= committed[p])
                .map(|(_, s)| s.clone())
        })
        .collect();
    let mut again = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while again.len() < expected.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "resumed {} of {}",
            again.len(),
            expected.len()
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.unwrap();
            assert!(
                msg.offset() >= committed[&msg.partition()],
                "redelivered a committed message"
            );
            again.push(String::from_utf8(msg.payload().unwrap().to_vec()).unwrap());
        }
    }
    again.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(again, expected);
    drop(consumer);
    private.shutdown().await.unwrap();
}
