//! Kafka in one place: the suite's topic names, the producer and consumer settings every
//! service uses, the headers messages carry, and W3C trace-context propagation through
//! those headers so one trace spans the whole saga.
//!
//! Settings live here (and nowhere else) because the guarantees of the suite depend on
//! them: an idempotent `acks=all` producer is what keeps per-partition order across
//! retries, and manual offset storing is what makes consumption at-least-once.

pub mod admin;
pub mod config;
pub mod headers;

pub use config::KafkaConfig;
pub use rdkafka;
/// Topic names live with the contracts (what each topic carries is part of the contract).
pub use saga_contracts::topics;

/// Partitions per topic by default: enough for two instances of a service to share work,
/// few enough that an idle consumer's fetch loop stays cheap on a small broker.
pub const DEFAULT_PARTITIONS: i32 = 4;

/// Errors from building Kafka clients or administering topics.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client configuration rejected: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
}
