//! The transactional outbox: the answer to the dual-write problem.
//!
//! A service must change its state *and* tell others about it. Writing to Postgres and then
//! to Kafka loses the message if the process dies in between; the other order publishes a
//! message about a change that may roll back. Instead, [`Outbox::send`] writes the encoded
//! message into the `outbox` table **inside the caller's transaction**: the state change and
//! the message commit or vanish together. The [`Relay`] then publishes committed rows to
//! Kafka with an idempotent producer and marks them delivered.
//!
//! Delivery is at least once: a relay that dies after Kafka acknowledged a batch but before
//! it marked the rows publishes them again. Consumers drop the duplicates with the inbox
//! (`saga-inbox`), so effects happen once.
//!
//! Ordering: see [`relay`] for how per-key order equals commit order, also with several
//! relay instances.

mod enqueue;
pub mod relay;

pub use enqueue::{Enqueue, Outbox, OutboxMessage, Tx};
pub use relay::{OutboxStats, Relay, RelayConfig};

/// The outbox table and its notify trigger (migration versions 10001..).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("encoding {message_type}: {source}")]
    Encode {
        message_type: &'static str,
        #[source]
        source: saga_contracts::EncodeError,
    },
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Kafka(#[from] saga_kafka::KafkaError),
    #[error("{failed} of {claimed} messages were not acknowledged by the broker")]
    Unacknowledged { failed: usize, claimed: usize },
}

impl OutboxError {
    /// Worth retrying: the registry or the database was unreachable, not a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            OutboxError::Encode { source, .. } => source.is_transient(),
            OutboxError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            OutboxError::Kafka(_) | OutboxError::Unacknowledged { .. } => true,
        }
    }
}
