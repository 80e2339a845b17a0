//! Consumer lag, computed from the broker: committed offset vs. high watermark per
//! partition. The runtime also exports librdkafka's own view as the `kafka_consumer_lag`
//! gauge; this is the outside view, for tools and tests.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use saga_kafka::KafkaConfig;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Next offset the group will read (`None`: nothing committed yet).
    pub committed: Option<i64>,
    pub high_watermark: i64,
    pub lag: i64,
}

/// Lag of `group` on every partition of `topic`.
pub async fn group_lag(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>, rdkafka::error::KafkaError> {
    let kafka = kafka.clone();
    let group = group.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut config = kafka.consumer_config(&group);
        config.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let mut list = TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                list.add_partition(&topic, p.id());
            }
        }
        let committed = consumer.committed_offsets(list, timeout)?;
        let mut lags = Vec::new();
        for element in committed.elements() {
            let (low, high) = consumer.fetch_watermarks(&topic, element.partition(), timeout)?;
            let committed = match element.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            lags.push(PartitionLag {
                topic: topic.clone(),
                partition: element.partition(),
                committed,
                high_watermark: high,
                lag: high - committed.unwrap_or(low),
            });
        }
        lags.sort_by_key(|l| l.partition);
        Ok(lags)
    })
    .await
    .expect("lag task panicked")
}
