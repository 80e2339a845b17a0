//! Reading the broker: the consumer groups (ListGroups, plus those named in config), each
//! group's committed offsets (OffsetFetch) and each partition's log start and end
//! (ListOffsets). Blocking librdkafka calls; the app runs them on the blocking pool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use saga_kafka::KafkaConfig;

use crate::config::LagConfig;
use crate::model::Observation;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Keeps one client for metadata and watermarks, and one per group for its offsets (a
/// consumer that never subscribes: OffsetFetch only, it never joins the group).
pub struct Poller {
    kafka: KafkaConfig,
    cfg: LagConfig,
    meta: BaseConsumer,
    groups: HashMap<String, BaseConsumer>,
    /// Whether the broker answered ListGroups last time (else only configured groups).
    pub list_groups_works: bool,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Poller {
    pub fn new(kafka: KafkaConfig, cfg: LagConfig) -> Result<Self, PollError> {
        let meta = client(&kafka, "lag-exporter.metadata")?;
        Ok(Self {
            kafka,
            cfg,
            meta,
            groups: HashMap::new(),
            list_groups_works: true,
        })
    }

    /// The groups to watch: the broker's list (when discovery is on and the broker answers),
    /// plus the configured ones, filtered by the configured prefix.
    fn group_names(&mut self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.cfg.groups.iter().cloned().collect();
        if self.cfg.discover {
            match self.meta.fetch_group_list(None, TIMEOUT) {
                Ok(list) => {
                    self.list_groups_works = true;
                    names.extend(list.groups().iter().map(|g| g.name().to_owned()));
                }
                Err(e) => {
                    if self.list_groups_works {
                        tracing::warn!(error = %e, "ListGroups failed; watching configured groups only");
                    }
                    self.list_groups_works = false;
                }
            }
        }
        names.retain(|g| g.starts_with(&self.cfg.group_prefix) && !g.starts_with("lag-exporter."));
        names
    }

    /// One poll of the whole broker.
    pub fn poll(&mut self) -> Result<Vec<Observation>, PollError> {
        let metadata = self.meta.fetch_metadata(None, TIMEOUT)?;
        let mut all = TopicPartitionList::new();
        for topic in metadata.topics() {
            let name = topic.name();
            if name.starts_with("__") || !name.starts_with(&self.cfg.topic_prefix) {
                continue;
            }
            for p in topic.partitions() {
                all.add_partition(name, p.id());
            }
        }
        if all.count() == 0 {
            return Ok(Vec::new());
        }
        // Committed offsets of every group on every partition; a topic counts for a group
        // when the group committed on at least one of its partitions.
        let mut committed: Vec<(String, String, i32, Option<i64>)> = Vec::new();
        let names = self.group_names();
        self.groups.retain(|g, _| names.contains(g));
        for group in names {
            let consumer = match self.groups.get(&group) {
                Some(c) => c,
                None => {
                    let c = client(&self.kafka, &group)?;
                    self.groups.entry(group.clone()).or_insert(c)
                }
            };
            let offsets = match consumer.committed_offsets(all.clone(), TIMEOUT) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(%group, error = %e, "OffsetFetch failed");
                    continue;
                }
            };
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<i64>)>> = BTreeMap::new();
            for e in offsets.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                };
                by_topic
                    .entry(e.topic().to_owned())
                    .or_default()
                    .push((e.partition(), offset));
            }
            for (topic, parts) in by_topic {
                if parts.iter().any(|(_, o)| o.is_some()) {
                    for (partition, offset) in parts {
                        committed.push((group.clone(), topic.clone(), partition, offset));
                    }
                }
            }
        }
        let mut marks: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        let mut out = Vec::with_capacity(committed.len());
        for (group, topic, partition, offset) in committed {
            let key = (topic.clone(), partition);
            let (low, high) = match marks.get(&key) {
                Some(m) => *m,
                None => {
                    let m = self.meta.fetch_watermarks(&topic, partition, TIMEOUT)?;
                    marks.insert(key, m);
                    m
                }
            };
            out.push(Observation {
                group,
                topic,
                partition,
                committed: offset,
                log_start: low,
                log_end: high,
            });
        }
        Ok(out)
    }
}

fn client(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer, PollError> {
    let mut config = kafka.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(config.create()?)
}
