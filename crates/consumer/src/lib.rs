//! The consumer runtime: how every service consumes Kafka.
//!
//! For each message, in partition order:
//! 1. decode it with the contracts codec (Avro, schema registry);
//! 2. open a transaction, claim the message id in the **inbox** — a duplicate is skipped —
//!    and call the service's typed [`Handler`] with the transaction, so the effect, the
//!    inbox row and any outgoing messages (outbox) commit together;
//! 3. commit, and only then **store the offset** (`enable.auto.offset.store=false`; offsets
//!    are committed from what was stored). A crash anywhere before the store leads to
//!    redelivery, which the inbox turns into a no-op: at-least-once delivery, effects once.
//!
//! Failures are classified ([`HandlerError::class`]): infrastructure failures (database or
//! registry unreachable) are retried with exponential backoff and jitter for as long as they
//! last, holding the partition so nothing after the failing message is applied first;
//! transient handler failures (serialisation conflicts, deadlocks) are retried up to
//! `max_attempts`; permanent failures (undecodable bytes, unknown schema id, a handler's
//! validation error) and exhausted retries send the **original bytes** to the dead-letter
//! topic with `dlq.*` headers naming the error, and the partition moves on.
//!
//! Throughput: messages of one partition that arrive together are applied in one
//! transaction (one commit, one fsync, for up to `max_batch` messages); partitions are
//! processed concurrently. If any message of a batch fails, the batch rolls back and is
//! re-run one message per transaction so the failure is isolated to its message.

pub mod backoff;
mod config;
mod context;
pub mod dead_letters;
mod error;
pub mod lag;
pub mod rewind;
mod runtime;

pub use config::{ConsumerConfig, Membership};
pub use error::{ConsumerError, ErrorClass, HandlerError};
pub use runtime::{Consumer, Handler, Incoming};
/// What a [`Handler`] gets: the transaction plus its staged outgoing messages.
pub use saga_outbox::Tx;
