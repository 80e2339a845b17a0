use saga_contracts::DecodeError;

/// What a handler can report.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never be applied (invalid content, a broken invariant): dead-letter it.
    #[error("{0}")]
    Permanent(String),
    /// Might succeed later (a conflict, a remote hiccup): retry with backoff, then dead-letter.
    #[error("{0}")]
    Transient(String),
    /// Classified by [`HandlerError::class`].
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] saga_outbox::OutboxError),
    /// The handler panicked (the runtime caught it; the transaction was rolled back). Retried
    /// like a transient failure: a panic that always recurs ends in the dead letters.
    #[error("handler panicked: {0}")]
    Panicked(String),
}

/// How the runtime treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A dependency is down: retry for as long as it takes, holding the partition.
    Infrastructure,
    /// Retry up to `max_attempts`, then dead-letter.
    Transient,
    /// Dead-letter now.
    Permanent,
}

impl HandlerError {
    pub fn class(&self) -> ErrorClass {
        match self {
            HandlerError::Permanent(_) => ErrorClass::Permanent,
            HandlerError::Transient(_) | HandlerError::Panicked(_) => ErrorClass::Transient,
            HandlerError::Database(e) => classify_sqlx(e),
            HandlerError::Outbox(e) if e.is_transient() => ErrorClass::Infrastructure,
            HandlerError::Outbox(saga_outbox::OutboxError::Database(e)) => classify_sqlx(e),
            HandlerError::Outbox(_) => ErrorClass::Permanent,
        }
    }
}

/// Connection-level failures are infrastructure; serialisation failures and deadlocks are
/// transient by definition (SQLSTATE 40001, 40P01); an admin shutdown or a server that is
/// starting up (57P01-57P03) or any connection exception (class 08) is infrastructure.
/// Anything else (a constraint violation, a type error) is a bug or bad data: permanent.
pub fn classify_sqlx(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorClass::Infrastructure,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("40001" | "40P01" | "55P03") => ErrorClass::Transient,
            Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                ErrorClass::Infrastructure
            }
            Some("53300") => ErrorClass::Infrastructure, // too many connections
            _ => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

pub(crate) fn classify_decode(error: &DecodeError) -> ErrorClass {
    if error.is_transient() {
        ErrorClass::Infrastructure
    } else {
        ErrorClass::Permanent
    }
}

/// Errors that stop a consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] saga_kafka::KafkaError),
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A partition worker died outside the handler (a bug in the runtime): its queued
    /// messages are gone from memory, so the consumer stops rather than skip them; the
    /// service stops with it and its supervisor restarts it from the committed offsets.
    #[error("the worker of partition {partition} panicked: {message}")]
    WorkerPanicked { partition: i32, message: String },
}
