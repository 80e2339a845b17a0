//! Keyed messages through the real broker in a two-member consumer group: one partition per
//! key, offsets committed, a consumer restarted without redelivery.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use saga_testkit::{TestStack, wait_until};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const KEYS: usize = 20;
const PARTITIONS: i32 = 4;
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Received {
    member: usize,
    key: String,
    seq: usize,
    partition: i32,
}

struct Member {
    consumer: Arc<StreamConsumer>,
    task: JoinHandle<()>,
}

fn key_of(seq: usize) -> String {
    format!("order-{}", seq % KEYS)
}

fn start_member(
    stack: &TestStack,
    group: &str,
    topic: &str,
    id: usize,
    tx: mpsc::UnboundedSender<Received>,
) -> Member {
    let consumer: StreamConsumer = stack
        .kafka_client_config(group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let consumer = Arc::new(consumer);
    let polled = consumer.clone();
    let task = tokio::spawn(async move {
        loop {
            let msg = polled.recv().await.expect("consume");
            let seq = std::str::from_utf8(msg.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
            let _ = tx.send(Received {
                member: id,
                key,
                seq,
                partition: msg.partition(),
            });
        }
    });
    Member { consumer, task }
}

/// Produces `seqs` keyed by `key_of`; returns key -> partitions the broker put it on.
async fn produce(
    stack: &TestStack,
    topic: &str,
    seqs: std::ops::Range<usize>,
) -> HashMap<String, BTreeSet<i32>> {
    let producer: FutureProducer = stack
        .kafka_client_config("unused")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let sends = seqs.map(|seq| {
        let producer = &producer;
        async move {
            let key = key_of(seq);
            let payload = seq.to_string();
            let delivered = producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
            (key, delivered.partition)
        }
    });
    let mut by_key: HashMap<String, BTreeSet<i32>> = HashMap::new();
    for (key, partition) in futures::future::join_all(sends).await {
        by_key.entry(key).or_default().insert(partition);
    }
    by_key
}

/// Both members hold a share and together all partitions, none twice.
async fn wait_balanced(a: &StreamConsumer, b: &StreamConsumer) {
    let partitions = |c: &StreamConsumer| -> BTreeSet<i32> {
        c.assignment()
            .map(|l| l.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    };
    wait_until(DEADLINE, || async {
        let (pa, pb) = (partitions(a), partitions(b));
        !pa.is_empty()
            && !pb.is_empty()
            && pa.is_disjoint(&pb)
            && pa.len() + pb.len() == PARTITIONS as usize
    })
    .await
    // Counting partitions is not enough: during a rebalance tansu briefly reports the same
    // partitions on both members.
    .expect("group of two members balanced");
}

async fn collect(rx: &mut mpsc::UnboundedReceiver<Received>, n: usize) -> Vec<Received> {
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while got.len() < n {
            got.push(rx.recv().await.expect("members alive"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} messages within {DEADLINE:?}", got.len()));
    got
}

fn assert_one_partition_per_key(records: &[Received]) {
    let mut by_key: HashMap<&str, BTreeSet<i32>> = HashMap::new();
    for r in records {
        by_key.entry(&r.key).or_default().insert(r.partition);
    }
    for (key, partitions) in by_key {
        assert_eq!(
            partitions.len(),
            1,
            "key {key} on partitions {partitions:?}"
        );
    }
}

#[tokio::test]
async fn keyed_messages_in_a_two_member_group_survive_a_consumer_restart() {
    let stack = TestStack::get().await;
    let topic = stack.unique_topic("stack-it-group").await;
    let group = format!("{topic}-group");
    let (tx, mut rx) = mpsc::unbounded_channel();

    let m1 = start_member(stack, &group, &topic, 1, tx.clone());
    let m2 = start_member(stack, &group, &topic, 2, tx.clone());
    // Producing only once the group is stable keeps a rebalance from handing uncommitted
    // messages to the other member.
    wait_balanced(&m1.consumer, &m2.consumer).await;

    let produced = produce(stack, &topic, 0..200).await;
    assert_eq!(produced.len(), KEYS);
    for (key, partitions) in &produced {
        assert_eq!(partitions.len(), 1, "producer put {key} on {partitions:?}");
    }

    let first = collect(&mut rx, 200).await;
    let seqs: BTreeSet<usize> = first.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..200).collect(), "every message exactly once");
    assert_one_partition_per_key(&first);
    for member in [1, 2] {
        assert!(
            first.iter().any(|r| r.member == member),
            "member {member} got a share"
        );
    }
    for r in &first {
        assert_eq!(Some(&BTreeSet::from([r.partition])), produced.get(&r.key));
    }

    // Commit both members, then restart member 2: close it cleanly (tansu does not evict a
    // killed member, see docs/local-stack.md) and start a new one in its place.
    m1.consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    m2.task.abort();
    let _ = m2.task.await;
    m2.consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(m2.consumer);

    let m3 = start_member(stack, &group, &topic, 3, tx.clone());
    wait_balanced(&m1.consumer, &m3.consumer).await;

    // The group's committed offsets cover the whole first batch.
    let mut all = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        all.add_partition(&topic, p);
    }
    let committed = m3
        .consumer
        .committed_offsets(all, Duration::from_secs(10))
        .unwrap();
    let committed_total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!("partition {} not committed: {other:?}", e.partition()),
        })
        .sum();
    assert_eq!(committed_total, 200);

    let second_produced = produce(stack, &topic, 200..240).await;
    let partitions_used: BTreeSet<i32> = second_produced.values().flatten().copied().collect();
    // Redelivered old messages would precede new ones on the same partition; new messages on
    // every partition make "nothing old arrived before them" cover the whole topic.
    assert_eq!(partitions_used.len(), PARTITIONS as usize);

    let second = collect(&mut rx, 40).await;
    let seqs: Vec<usize> = second.iter().map(|r| r.seq).collect();
    assert!(
        seqs.iter().all(|s| *s >= 200),
        "redelivered after restart: {:?}",
        seqs.iter().filter(|s| **s < 200).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs.iter().copied().collect::<BTreeSet<_>>(),
        (200..240).collect(),
        "every new message exactly once"
    );
    assert_eq!(seqs.len(), 40);
    assert_one_partition_per_key(&second);

    m1.task.abort();
    m3.task.abort();
}
