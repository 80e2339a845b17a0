//! A minimal consumer for the exporter's tests: `lag-test-consumer BOOTSTRAP GROUP TOPIC`
//! assigns every partition of TOPIC, resumes from GROUP's committed offsets and commits each
//! message synchronously. The tests SIGKILL it to show what a dead consumer's lag does.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, group, topic] = args.as_slice() else {
        return Err("usage: lag-test-consumer BOOTSTRAP GROUP TOPIC".into());
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(list.clone(), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        assignment.add_partition_offset(topic, e.partition(), offset)?;
    }
    consumer.assign(&assignment)?;
    println!("consuming");
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            consumer.commit_message(&message, CommitMode::Sync)?;
        }
    }
}
