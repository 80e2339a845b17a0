//! The orchestrator's watch on the dead-letter topic.
//!
//! A command that a participant dead-lettered will never be answered, and re-sending it
//! walks into the same failure (and adds a dead letter each time). So the orchestrator reads
//! the dead-letter topic itself: a dead-lettered command of a saga's pending step opens an
//! incident (`dead_lettered`) that points at the dead letter (its topic, partition, offset,
//! message id and error); the saga stops re-sending until an operator acts.
//!
//! Why here and not a report from the consumer runtime: the dead-letter topic already is the
//! durable record every consumer writes the same way, so participants need not know sagas
//! exist, and a report cannot be lost between the dead letter and the orchestrator.
//!
//! Matching is by headers only (`dlq.source.topic`, `message_type`, the key = order id), so
//! undecodable letters cost nothing. Everything else on the topic (events, an OrderPlaced
//! dead-lettered by the orchestrator itself, letters of finished sagas) is skipped. Reading
//! twice (a restart before the offset commit, two orchestrator instances) opens one incident:
//! the saga row is locked and an incident for the same letter is not opened again.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use saga_consumer::dead_letters as dlq;
use saga_contracts::{OrderId, topics};
use saga_kafka::KafkaConfig;
use saga_kafka::headers::{self, HeaderMap};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::runner::{SagaError, SagaRunner};

/// The topics whose dead letters can stall a saga: the commands the orchestrator sends.
pub const COMMAND_TOPICS: [&str; 4] = [
    topics::INVENTORY_COMMANDS,
    topics::PAYMENT_COMMANDS,
    topics::SHIPPING_COMMANDS,
    topics::ORDER_COMMANDS,
];

/// One record of the dead-letter topic, as far as the saga cares.
#[derive(Debug, Clone)]
pub struct DeadLetterNotice {
    /// Where the dead letter itself is (topic on the wire, partition, offset).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The logical topic the original message was consumed from (prefix removed).
    pub source_topic: Option<String>,
    pub order_id: Option<OrderId>,
    pub message_type: Option<String>,
    pub message_id: Option<String>,
    pub error: String,
    pub consumer_group: Option<String>,
}

impl DeadLetterNotice {
    /// Read a dead letter's key and headers; `prefix` is the suite's topic prefix.
    pub fn from_parts(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&str>,
        h: &HeaderMap,
        prefix: &str,
    ) -> Self {
        let get = |name: &str| h.get(name).cloned();
        DeadLetterNotice {
            topic: topic.to_owned(),
            partition,
            offset,
            source_topic: h
                .get(dlq::SOURCE_TOPIC)
                .map(|t| t.strip_prefix(prefix).unwrap_or(t).to_owned()),
            order_id: key.and_then(|k| k.parse().ok()),
            message_type: get(headers::MESSAGE_TYPE),
            message_id: get(headers::MESSAGE_ID),
            error: get(dlq::ERROR).unwrap_or_else(|| "no dlq.error header".to_owned()),
            consumer_group: get(dlq::CONSUMER_GROUP),
        }
    }

    fn from_message(m: &BorrowedMessage<'_>, prefix: &str) -> Self {
        let key = m.key().map(String::from_utf8_lossy);
        DeadLetterNotice::from_parts(
            m.topic(),
            m.partition(),
            m.offset(),
            key.as_deref(),
            &headers::from_kafka_headers(m.headers()),
            prefix,
        )
    }

    /// Whether the original message was a command the orchestrator sent.
    pub fn is_command(&self) -> bool {
        self.source_topic
            .as_deref()
            .is_some_and(|t| COMMAND_TOPICS.contains(&t))
    }

    /// What the incident records about the dead letter.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "message_id": self.message_id,
            "message_type": self.message_type,
            "source_topic": self.source_topic,
            "consumer_group": self.consumer_group,
            "error": self.error,
        })
    }
}

/// What the orchestrator made of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterOutcome {
    /// The saga waited on this command: it is now in `incident`.
    IncidentOpened,
    /// Not a command, no saga for the key, or the saga no longer waits on this command.
    NotPending,
    /// This dead letter already opened an incident (read twice).
    AlreadyRecorded,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Read the dead-letter topic (every partition, from the group's committed offsets) until
/// `shutdown`; an offset is stored only after the saga side committed. A database that is
/// away is waited for; a letter that cannot be handled otherwise is logged and passed over.
pub async fn watch(
    runner: SagaRunner,
    pool: PgPool,
    kafka: KafkaConfig,
    group_id: String,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let topic = kafka.topic(topics::DEAD_LETTERS);
    let consumer: StreamConsumer = kafka.consumer_config(&group_id).create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..saga_kafka::DEFAULT_PARTITIONS {
        assignment.add_partition_offset(&topic, p, Offset::Stored)?;
    }
    // assign(), not subscribe(): see STACK-FACTS on group membership after a kill.
    consumer.assign(&assignment)?;
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let m = match message {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "reading the dead-letter topic failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let notice = DeadLetterNotice::from_message(&m, &kafka.topic_prefix);
        let mut attempt = 0u32;
        loop {
            match runner.on_dead_letter(&pool, &notice).await {
                Ok(_) => break,
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "dead letter not handled yet; retrying");
                    let pause = Duration::from_millis(100 * u64::from(attempt.min(50)));
                    tokio::select! {
                        () = shutdown.cancelled() => return commit(&consumer),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, partition = notice.partition, offset = notice.offset, "dead letter cannot be matched to a saga; passed over");
                    break;
                }
            }
        }
        consumer.store_offset(m.topic(), m.partition(), m.offset())?;
    }
    commit(&consumer)
}

/// Commit what was stored before stopping. A failure only means the last letters are read
/// again by the next start, which changes nothing (see the module doc), so it is logged.
fn commit(consumer: &StreamConsumer) -> Result<(), WatchError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(error) => tracing::warn!(%error, "committing the dead-letter offsets failed"),
    }
    Ok(())
}

impl SagaRunner {
    /// A dead letter was read: if it is the pending command of a waiting saga, open an
    /// incident that points at it.
    pub async fn on_dead_letter(
        &self,
        pool: &PgPool,
        notice: &DeadLetterNotice,
    ) -> Result<DeadLetterOutcome, SagaError> {
        let (Some(order_id), Some(message_type), true) = (
            notice.order_id,
            notice.message_type.as_deref(),
            notice.is_command(),
        ) else {
            return Ok(DeadLetterOutcome::NotPending);
        };
        let mut tx = pool.begin().await.map_err(crate::store::StoreError::from)?;
        let outcome = self
            .dead_lettered_command(
                &mut saga_outbox::Tx::direct(&mut tx),
                order_id,
                message_type,
                notice,
            )
            .await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        Ok(outcome)
    }
}
