//! Dead letters: what a consumer gave up on, and the tools to inspect and replay them.
//!
//! A dead letter is the **original record** (key, Avro bytes, headers) published to the
//! dead-letter topic with `dlq.*` headers saying why. Keeping the original bytes means a
//! replay after a fix re-delivers exactly what the producer wrote, with its message id, so
//! the inbox still guards against applying it twice.

use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use saga_kafka::KafkaConfig;
use saga_kafka::headers::{self, HeaderMap};
use serde::Serialize;

pub const ERROR: &str = "dlq.error";
pub const KIND: &str = "dlq.kind";
pub const SOURCE_TOPIC: &str = "dlq.source.topic";
pub const SOURCE_PARTITION: &str = "dlq.source.partition";
pub const SOURCE_OFFSET: &str = "dlq.source.offset";
pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
pub const ATTEMPTS: &str = "dlq.attempts";
pub const FIRST_FAILED_AT: &str = "dlq.first_failed_at";
pub const FAILED_AT: &str = "dlq.failed_at";
/// Set on a replayed record: the dead letter it came from (`partition:offset`).
pub const REPLAYED_FROM: &str = "dlq.replayed_from";

/// Why a message was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Undecodable: bad bytes, unknown schema id, a type this topic does not carry.
    Decode,
    /// The handler reported a permanent error.
    Handler,
    /// A transient error persisted through every attempt.
    RetriesExhausted,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Decode => "decode",
            FailureKind::Handler => "handler",
            FailureKind::RetriesExhausted => "retries_exhausted",
        }
    }
}

pub(crate) struct Letter<'a> {
    pub error: &'a str,
    pub kind: FailureKind,
    pub group: &'a str,
    pub attempts: u32,
    pub first_failed_at: chrono::DateTime<chrono::Utc>,
}

impl Letter<'_> {
    pub(crate) fn write_headers(
        &self,
        h: &mut HeaderMap,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        h.insert(ERROR.into(), self.error.to_owned());
        h.insert(KIND.into(), self.kind.as_str().into());
        h.insert(SOURCE_TOPIC.into(), topic.to_owned());
        h.insert(SOURCE_PARTITION.into(), partition.to_string());
        h.insert(SOURCE_OFFSET.into(), offset.to_string());
        h.insert(CONSUMER_GROUP.into(), self.group.to_owned());
        h.insert(ATTEMPTS.into(), self.attempts.to_string());
        h.insert(FIRST_FAILED_AT.into(), self.first_failed_at.to_rfc3339());
        h.insert(FAILED_AT.into(), chrono::Utc::now().to_rfc3339());
    }
}

/// A record read back from the dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    pub payload_len: usize,
    pub headers: HeaderMap,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn error(&self) -> Option<&str> {
        self.header(ERROR)
    }
    pub fn source_topic(&self) -> Option<&str> {
        self.header(SOURCE_TOPIC)
    }
    pub fn id(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] saga_kafka::KafkaError),
    #[error("dead letter {0} has no dlq.source.topic header")]
    NoSource(String),
    #[error("{0}")]
    Other(String),
}

/// Every record on the dead-letter topic, oldest first per partition. Reads with `assign()`
/// and no offset commits, so listing changes nothing.
pub async fn list(kafka: &KafkaConfig, topic: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || list_blocking(&kafka, &topic))
        .await
        .map_err(|e| DeadLetterError::Other(e.to_string()))?
}

fn list_blocking(kafka: &KafkaConfig, topic: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let mut config = kafka.consumer_config("saga-dlq-reader");
    config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
                ends.push((p.id(), high));
            }
        }
    }
    let mut letters = Vec::new();
    if ends.is_empty() {
        return Ok(letters);
    }
    consumer.assign(&assignment)?;
    let expected: i64 = ends.len() as i64;
    let mut finished = 0i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while finished < expected && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = message?;
        let payload = m.payload().map(<[u8]>::to_vec);
        letters.push(DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload_len: payload.as_ref().map_or(0, Vec::len),
            payload,
            headers: headers::from_kafka_headers(m.headers()),
        });
        if ends
            .iter()
            .any(|(p, high)| *p == m.partition() && m.offset() + 1 == *high)
        {
            finished += 1;
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// Publish a dead letter's original record back to its source topic, with its original
/// headers (minus `dlq.*`) and `dlq.replayed_from`. The message id is unchanged, so a
/// consumer that already applied it skips it.
pub async fn replay(kafka: &KafkaConfig, letter: &DeadLetter) -> Result<(), DeadLetterError> {
    let source = letter
        .source_topic()
        .ok_or_else(|| DeadLetterError::NoSource(letter.id()))?
        .to_owned();
    let mut h: HeaderMap = letter
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    h.insert(REPLAYED_FROM.into(), letter.id());
    let producer = kafka.producer()?;
    let mut record = FutureRecord::to(&source).headers(headers::to_kafka_headers(&h));
    if let Some(key) = &letter.key {
        record = record.key(key);
    }
    if let Some(payload) = &letter.payload {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| DeadLetterError::Kafka(e))?;
    Ok(())
}
