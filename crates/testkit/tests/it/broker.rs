//! The patched broker (crates/stack/tansu/README.md) behaves like Kafka on fetch: data that
//! is waiting is answered at once whatever `fetch.wait.max.ms` is, an idle fetch wakes when a
//! produce lands on its partition, and idle consumers cost the broker next to nothing.
//!
//! These run on a broker of their own (not the shared test stack), so that the other tests'
//! traffic neither delays the fetches measured here nor counts as the idle broker's CPU.
//! The bounds are far from what the patch gives (single-digit milliseconds) and far below
//! what the unpatched broker needs (it sleeps half the wait after every round), so a loaded
//! machine does not make them flaky and a regression cannot pass.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use saga_stack::{Broker, Stack};
use saga_testkit::PrivateStack;
use tokio::sync::OnceCell;

static BROKER: OnceCell<PrivateStack> = OnceCell::const_new();

async fn broker() -> &'static PrivateStack {
    BROKER
        .get_or_init(|| async {
            PrivateStack::start_with(|cfg| Stack::empty(cfg).push(Broker))
                .await
                .expect("start a broker of the broker tests' own")
        })
        .await
}

fn bootstrap(stack: &PrivateStack) -> String {
    stack.stack().env().kafka_bootstrap
}

async fn topic(stack: &PrivateStack, partitions: i32) -> String {
    let name = format!("broker-test-{}", uuid::Uuid::new_v4().simple());
    saga_stack::create_topics(&bootstrap(stack), &[(name.as_str(), partitions)])
        .await
        .expect("create topic");
    name
}

fn producer(stack: &PrivateStack) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap(stack))
        .set("linger.ms", "0")
        .set("log_level", "3")
        .create()
        .expect("producer")
}

/// A consumer of `partitions` of `topic` from the beginning, with the given fetch wait.
fn consumer(stack: &PrivateStack, topic: &str, partitions: i32, wait_ms: u32) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(stack))
        .set(
            "group.id",
            format!("broker-test-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", wait_ms.to_string())
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

async fn produce(producer: &FutureProducer, topic: &str, partition: i32, n: usize) {
    let payload = vec![b'x'; 200];
    let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let sends: Vec<_> = keys
        .iter()
        .map(|key| {
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(key)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for send in sends {
        send.await.expect("delivery report").expect("produced");
    }
}

async fn recv(consumer: &StreamConsumer) -> i64 {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .expect("consume")
        .offset()
}

#[tokio::test]
async fn waiting_data_is_answered_at_once_whatever_the_fetch_wait() {
    let stack = broker().await;
    for wait_ms in [500_u32, 1000] {
        let topic = topic(stack, 1).await;
        // Produced one at a time: small record batches, so that the small fetches below
        // take many rounds to read the backlog.
        let producer = producer(stack);
        for _ in 0..20 {
            produce(&producer, &topic, 0, 100).await;
        }
        // At most ~16 KiB per fetch: the 2,000 waiting messages (~0.5 MB) take dozens of
        // fetches, each of which the unpatched broker held for half the wait or more.
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap(stack))
            .set(
                "group.id",
                format!("broker-test-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", wait_ms.to_string())
            .set("fetch.max.bytes", "16384")
            .set("max.partition.fetch.bytes", "16384")
            .set("message.max.bytes", "16384")
            .set("log_level", "3")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assign");

        // Timed from the first message on, so the consumer's start does not count.
        assert_eq!(recv(&consumer).await, 0);
        let started = Instant::now();
        let mut last = 0;
        while last < 1_999 {
            last = recv(&consumer).await;
        }
        let rest = started.elapsed();
        eprintln!(
            "fetch.wait.max.ms={wait_ms}: 1,999 waiting messages in ~16 KiB fetches after \
             the first: {rest:?}"
        );
        // Unpatched, dozens of fetches x half the wait: many seconds.
        assert!(
            rest < Duration::from_millis(u64::from(wait_ms)),
            "the backlog took {rest:?} at a {wait_ms} ms fetch wait"
        );
    }
}

#[tokio::test]
async fn an_idle_fetch_wakes_when_a_produce_lands_on_its_partition() {
    let stack = broker().await;
    let topic = topic(stack, 4).await;
    let producer = producer(stack);
    // Long enough that a fetch woken by its timer could not pass the bounds below.
    let consumer = consumer(stack, &topic, 4, 2_000);
    // Warm up: connection, offsets and the first fetch round are behind us after this one.
    produce(&producer, &topic, 1, 1).await;
    recv(&consumer).await;

    let mut hops = Vec::new();
    for i in 0..7 {
        // Let the consumer's next fetch reach the broker and find the partitions empty.
        tokio::task::yield_now().await;
        let started = Instant::now();
        produce(&producer, &topic, i % 4, 1).await;
        recv(&consumer).await;
        hops.push(started.elapsed());
    }
    hops.sort();
    eprintln!("produce -> idle consumer at fetch.wait.max.ms=2000: {hops:?}");
    let median = hops[hops.len() / 2];
    // Unpatched: a new message waited for the fetch's sleep to run out, 146-387 ms at a
    // 1000 ms wait, and more at 2000 ms.
    assert!(median < Duration::from_millis(100), "median hop {median:?}");
    assert!(
        hops[hops.len() - 1] < Duration::from_millis(600),
        "slowest hop {:?}",
        hops[hops.len() - 1]
    );
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

#[tokio::test]
async fn idle_consumers_cost_the_broker_next_to_nothing() {
    // A broker of this test's own: the other tests' traffic must not count as idle CPU.
    let stack = &PrivateStack::start_with(|cfg| Stack::empty(cfg).push(Broker))
        .await
        .expect("start a broker");
    let pid = stack
        .stack()
        .pid("broker")
        .expect("broker pid file")
        .expect("broker running");
    // As many consumers as the suite runs (order 1, inventory 1, payment 1, shipping 2,
    // orchestrator 4), at the suite's fetch wait, each on a topic of four partitions.
    let wait_ms = saga_stack::SUITE_FETCH_WAIT_MS;
    let mut consumers = Vec::new();
    for _ in 0..9 {
        let topic = topic(stack, 4).await;
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap(stack))
            .set(
                "group.id",
                format!("idle-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", wait_ms.to_string())
            .set("log_level", "3")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(&topic, p, Offset::End).unwrap();
        }
        c.assign(&tpl).unwrap();
        consumers.push(c);
    }
    // Poll every consumer until each has reached its fetch loop (no message will come).
    let poll_all = |consumers: &Vec<BaseConsumer>| {
        for c in consumers {
            assert!(c.poll(Duration::ZERO).is_none_or(|m| m.is_ok()));
        }
    };
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        poll_all(&consumers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The best of three windows: idle cost is a floor, and the other tests of this binary run
    // beside this one on the same cores, which bills the broker for cache misses and
    // preemption in whichever window they are busiest (11% in one 5 s window of a CI run
    // against 6.8% on a quiet machine).
    let mut shares = Vec::new();
    for _ in 0..3 {
        let window = Duration::from_secs(3);
        let before = cpu_seconds(pid);
        let started = Instant::now();
        while started.elapsed() < window {
            poll_all(&consumers);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shares.push((cpu_seconds(pid) - before) / started.elapsed().as_secs_f64());
    }
    let share = shares.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "idle broker with 9 consumers x 4 partitions at fetch.wait.max.ms={wait_ms}: {:.1}% of a \
         core (windows: {})",
        share * 100.0,
        shares
            .iter()
            .map(|s| format!("{:.1}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        share < 0.10,
        "idle broker used {:.1}% of a core at best",
        share * 100.0
    );
}
