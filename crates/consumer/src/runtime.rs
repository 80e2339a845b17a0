//! The consumer loop: fetch, route by partition, apply in transactions, store offsets.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use saga_contracts::{Codec, DecodeError, Metadata, TopicMessage};
use saga_inbox::{Claim, Inbox, Source};
use saga_kafka::KafkaConfig;
use saga_kafka::headers::{self, HeaderMap};
use saga_outbox::Tx;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::backoff::Backoff;
use crate::config::{ConsumerConfig, Membership};
use crate::context::{Assignment, RuntimeContext};
use crate::dead_letters::{self, FailureKind};
use crate::error::{ConsumerError, ErrorClass, HandlerError, classify_decode};

/// A service's message handler. It receives an open transaction: every write it makes,
/// including messages sent through the outbox, commits together with the inbox row and
/// before the offset is stored.
pub trait Handler: Send + Sync + 'static {
    /// The topic's message enum (decides which topic is consumed).
    type Message: TopicMessage;

    /// What the handler does, for reprocessing: only a [`HandlerKind::Projection`] may have
    /// a rewound range applied again (`reapply`, see [`crate::rewind`]).
    const KIND: crate::rewind::HandlerKind = crate::rewind::HandlerKind::Effects;

    /// Apply one message within the runtime's transaction. `tx` is the connection (it derefs
    /// to `PgConnection`) plus the messages sent through it with [`saga_outbox::Outbox::send`]:
    /// those are written together, one statement per batch, just before the commit.
    fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<Self::Message>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once per batch transaction, before any message of the batch is handled: lock
    /// the shared rows the whole batch will touch, in one global order (e.g. sorted keys).
    /// Batches of several partitions applied concurrently otherwise take the same hot rows
    /// message by message in different orders and deadlock (PostgreSQL detects it only after
    /// `deadlock_timeout`, 1 s, and the batch is re-run one message per transaction). The
    /// default locks nothing; a single message is handled without this call. What it read
    /// while locking it may [`Tx::keep`] for `handle` to take instead of reading it again.
    fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<Self::Message>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (tx, msgs);
        async { Ok(()) }
    }
}

/// A decoded message and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming<M> {
    pub message: M,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: HeaderMap,
}

impl<M: TopicMessage> Incoming<M> {
    pub fn meta(&self) -> &Metadata {
        self.message.meta()
    }
}

/// A fetched record, copied out of librdkafka's buffer.
#[derive(Debug, Clone)]
struct Raw {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: HeaderMap,
}

impl Raw {
    fn from_message(m: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: headers::from_kafka_headers(m.headers()),
        }
    }
}

struct Item<M> {
    raw: Raw,
    decoded: Result<Incoming<M>, DecodeError>,
    span: Span,
}

/// A failure of one attempt.
struct Failure {
    class: ErrorClass,
    kind: FailureKind,
    error: String,
}

impl From<HandlerError> for Failure {
    fn from(e: HandlerError) -> Self {
        Failure {
            class: e.class(),
            kind: FailureKind::Handler,
            error: e.to_string(),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Database(e).into()
    }
}

/// Shutdown interrupted a retry loop; the message's offset was not stored.
struct Stopped;

type KafkaConsumer = StreamConsumer<RuntimeContext>;

struct Shared<H: Handler> {
    config: ConsumerConfig,
    pool: PgPool,
    codec: Codec,
    handler: H,
    inbox: Inbox,
    dead_letters: FutureProducer,
    dead_letter_topic: String,
    backoff: Backoff,
    assignment: Assignment,
}

/// One consumer group member for one handler (one topic).
pub struct Consumer<H: Handler> {
    shared: Arc<Shared<H>>,
    kafka: KafkaConfig,
}

impl<H: Handler> Consumer<H> {
    /// A consumer with a dead-letter producer of its own.
    pub fn new(
        kafka: &KafkaConfig,
        config: ConsumerConfig,
        pool: PgPool,
        codec: Codec,
        handler: H,
    ) -> Result<Self, ConsumerError> {
        let producer = kafka.producer()?;
        Self::with_producer(kafka, config, pool, codec, handler, producer)
    }

    /// A consumer that dead-letters through `producer` (a clone of the service's one
    /// producer: each librdkafka producer runs a polling thread that costs CPU even when
    /// idle, so a service shares one between its relay and all its consumers).
    pub fn with_producer(
        kafka: &KafkaConfig,
        config: ConsumerConfig,
        pool: PgPool,
        codec: Codec,
        handler: H,
        producer: FutureProducer,
    ) -> Result<Self, ConsumerError> {
        if config.group_id.trim().is_empty() {
            return Err(ConsumerError::Config("consumer.group_id is empty".into()));
        }
        if config.max_batch == 0 || config.max_attempts == 0 {
            return Err(ConsumerError::Config(
                "consumer.max_batch and consumer.max_attempts must be at least 1".into(),
            ));
        }
        let backoff = Backoff {
            initial: Duration::from_millis(config.backoff_initial_ms),
            max: Duration::from_millis(config.backoff_max_ms),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                inbox: Inbox::new(config.group_id.clone()),
                dead_letters: producer,
                dead_letter_topic: kafka.topic(&config.dead_letter_topic),
                backoff,
                assignment: Assignment::default(),
                config,
                pool,
                codec,
                handler,
            }),
            kafka: kafka.clone(),
        })
    }

    /// The topic consumed (the message type's topic plus the configured prefix).
    pub fn topic(&self) -> String {
        self.kafka.topic(H::Message::TOPIC)
    }

    /// Consume until `shutdown`, then let in-flight batches finish (within
    /// `shutdown_grace_ms`) and commit the stored offsets.
    /// The consumer group this consumer commits as.
    pub fn group(&self) -> &str {
        &self.shared.config.group_id
    }

    /// Consumes until `shutdown` is cancelled, then finishes in-flight work (within the grace
    /// period) and commits. Can be run again afterwards (a rewind stops it, moves the group's
    /// offsets and runs it again).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let shared = self.shared.clone();
        let topic = self.kafka.topic(H::Message::TOPIC);
        let topic = topic.as_str();
        let group = shared.config.group_id.clone();
        let context = RuntimeContext {
            group: group.clone(),
            assignment: shared.assignment.clone(),
        };
        let consumer: Arc<KafkaConsumer> = Arc::new(
            self.kafka
                .consumer_config(&group)
                .create_with_context(context)?,
        );
        match shared.config.membership {
            Membership::Group => consumer.subscribe(&[topic])?,
            Membership::Assign => assign_all(&consumer, topic, &shared.assignment).await?,
        }
        tracing::info!(%group, topic, membership = ?shared.config.membership, "consumer started");

        let mut workers: HashMap<i32, mpsc::Sender<Raw>> = HashMap::new();
        let mut worker_partitions: HashMap<tokio::task::Id, i32> = HashMap::new();
        let mut tasks = JoinSet::new();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(Err(died)) = tasks.join_next(), if !tasks.is_empty() => {
                    // Handler panics are caught in `apply`; reaching this is a runtime bug.
                    // Never a silent stall: count it, log it, and stop the consumer (and so
                    // the service) instead of skipping the dead worker's queued messages.
                    let partition = worker_partitions.get(&died.id()).copied().unwrap_or(-1);
                    let message = panic_message(died);
                    metrics::counter!("consumer_worker_panics_total", "group" => group.clone())
                        .increment(1);
                    tracing::error!(%group, topic, partition, %message, "partition worker panicked; stopping the consumer");
                    tasks.abort_all();
                    return Err(ConsumerError::WorkerPanicked { partition, message });
                }
                received = consumer.recv() => received,
            };
            let raw = match received {
                Ok(message) => Raw::from_message(&message),
                Err(error) => {
                    tracing::warn!(%error, %group, "kafka fetch error");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            let sender = workers.entry(raw.partition).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(shared.config.partition_buffer);
                let handle = tasks.spawn(partition_worker(
                    shared.clone(),
                    consumer.clone(),
                    raw.partition,
                    rx,
                    shutdown.clone(),
                ));
                worker_partitions.insert(handle.id(), raw.partition);
                tx
            });
            // A full buffer holds the fetch loop back (backpressure), but never shutdown.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sender.send(raw) => {}
            }
        }

        drop(workers);
        let grace = Duration::from_millis(shared.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(%group, "in-flight work did not finish within the shutdown grace period");
            tasks.abort_all();
        }
        let committer = consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || committer.commit_consumer_state(CommitMode::Sync))
                .await;
        if let Ok(Err(error)) = committed {
            tracing::debug!(%error, "final offset commit: nothing to commit");
        }
        tracing::info!(%group, topic, "consumer stopped");
        Ok(())
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_payload(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

fn panic_message(error: tokio::task::JoinError) -> String {
    if error.is_panic() {
        panic_payload(error.into_panic().as_ref())
    } else {
        error.to_string()
    }
}

/// `assign()` every partition of `topic`, resuming from the group's committed offsets.
async fn assign_all(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    assignment: &Assignment,
) -> Result<(), ConsumerError> {
    let c = consumer.clone();
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&name), Duration::from_secs(10)))
            .await
            .map_err(|e| ConsumerError::Config(e.to_string()))??;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ConsumerError::Config(format!(
            "topic {topic} has no partitions (does it exist?)"
        )));
    }
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition_offset(topic, *p, Offset::Stored)?;
    }
    consumer.assign(&list)?;
    assignment.set(partitions);
    Ok(())
}

/// Applies one partition's messages in order, batching what has already arrived.
async fn partition_worker<H: Handler>(
    shared: Arc<Shared<H>>,
    consumer: Arc<KafkaConsumer>,
    partition: i32,
    mut rx: mpsc::Receiver<Raw>,
    shutdown: CancellationToken,
) {
    let max_batch = shared.config.max_batch;
    let linger = Duration::from_millis(shared.config.linger_ms);
    let mut busy = false;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = rx.recv() => match first { Some(raw) => raw, None => return },
        };
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch, max_batch);
        if busy && !linger.is_zero() && batch.len() < max_batch {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < max_batch {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(raw)) => {
                        batch.push(raw);
                        take_queued(&mut rx, &mut batch, max_batch);
                    }
                    // Linger over, or the fetch loop stopped: apply what we have.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        busy = batch.len() > 1;
        if !shared.assignment.contains(partition) {
            // Revoked while queued: the new owner fetches these from the committed offset.
            continue;
        }
        metrics::histogram!("consumer_batch_size", "group" => shared.config.group_id.clone())
            .record(batch.len() as f64);
        if shared.process(&consumer, batch, &shutdown).await.is_err() {
            return;
        }
    }
}

/// Move what is already queued into `batch`, up to `max_batch`.
fn take_queued(rx: &mut mpsc::Receiver<Raw>, batch: &mut Vec<Raw>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(raw) => batch.push(raw),
            Err(_) => break,
        }
    }
}

impl<H: Handler> Shared<H> {
    async fn process(
        &self,
        consumer: &KafkaConsumer,
        batch: Vec<Raw>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut items = Vec::with_capacity(batch.len());
        for raw in batch {
            items.push(self.decode(raw, shutdown).await?);
        }
        // Fast path: the whole batch in one transaction.
        if items.len() > 1 && items.iter().all(|i| i.decoded.is_ok()) {
            match self.apply(&items).await {
                Ok(()) => {
                    let last = &items[items.len() - 1].raw;
                    self.store_offset(consumer, last);
                    return Ok(());
                }
                Err(failure) => tracing::debug!(
                    error = %failure.error,
                    "batch failed; re-running it one message per transaction"
                ),
            }
        }
        for item in &items {
            self.process_one(consumer, item, shutdown).await?;
        }
        Ok(())
    }

    /// Decode, retrying while the registry is unreachable (an unknown schema id or bad
    /// bytes are permanent and go to the dead letters later).
    async fn decode(
        &self,
        raw: Raw,
        shutdown: &CancellationToken,
    ) -> Result<Item<H::Message>, Stopped> {
        let span = tracing::info_span!(
            "consume",
            group = %self.config.group_id,
            topic = %raw.topic,
            partition = raw.partition,
            offset = raw.offset,
            message_type = tracing::field::Empty,
            message_id = tracing::field::Empty,
            order_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        headers::set_parent_from_headers(&span, &raw.headers);
        if let Some(trace_id) = headers::trace_id(&raw.headers) {
            span.record("trace_id", trace_id);
        }
        let mut attempt = 0;
        let decoded = loop {
            let payload = raw.payload.as_deref().unwrap_or_default();
            match self.codec.decode::<H::Message>(payload).await {
                Err(e) if classify_decode(&e) == ErrorClass::Infrastructure => {
                    attempt += 1;
                    tracing::warn!(parent: &span, error = %e, attempt, "decode: registry unavailable; retrying");
                    self.pause(attempt, shutdown).await?;
                }
                other => break other,
            }
        };
        let decoded = decoded.map(|message| {
            let meta = message.meta();
            span.record("message_type", message.type_name());
            span.record("message_id", tracing::field::display(&meta.message_id));
            span.record("order_id", tracing::field::display(&meta.order_id));
            Incoming {
                message,
                topic: raw.topic.clone(),
                partition: raw.partition,
                offset: raw.offset,
                headers: raw.headers.clone(),
            }
        });
        Ok(Item { raw, decoded, span })
    }

    /// One transaction: inbox claim + handler for each message, then commit.
    async fn apply(&self, items: &[Item<H::Message>]) -> Result<(), Failure> {
        let mut tx = self.pool.begin().await?;
        let mut staged = Tx::staged(&mut tx);
        if items.len() > 1 {
            let msgs: Vec<&Incoming<H::Message>> = items
                .iter()
                .filter_map(|i| i.decoded.as_ref().ok())
                .collect();
            self.handler.lock_batch(&mut staged, &msgs).await?;
        }
        let mut duplicates = 0u64;
        let claims = self.claim(&mut staged, items).await?;
        for (item, claim) in items.iter().zip(claims) {
            let Ok(incoming) = &item.decoded else {
                unreachable!("only decoded messages are applied")
            };
            async {
                match claim {
                    Claim::Duplicate => {
                        tracing::info!("duplicate delivery skipped");
                        duplicates += 1;
                        Ok(())
                    }
                    Claim::New => {
                        // A panicking handler must not kill the partition's worker (the
                        // partition would stop silently): the panic becomes a failure of
                        // this attempt, retried like a transient one; the transaction is
                        // dropped, so nothing it wrote survives.
                        AssertUnwindSafe(self.handler.handle(&mut staged, incoming))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|panic| {
                                let message = panic_payload(panic.as_ref());
                                metrics::counter!(
                                    "consumer_handler_panics_total",
                                    "group" => self.config.group_id.clone(),
                                    "topic" => item.raw.topic.clone()
                                )
                                .increment(1);
                                tracing::error!(%message, "message handler panicked");
                                Err(HandlerError::Panicked(message))
                            })
                    }
                }
            }
            .instrument(item.span.clone())
            .await?;
        }
        staged.flush().await.map_err(HandlerError::Outbox)?;
        tx.commit().await?;
        let group = self.config.group_id.clone();
        metrics::counter!("consumer_messages_total", "group" => group.clone(), "outcome" => "applied")
            .increment(items.len() as u64 - duplicates);
        if duplicates > 0 {
            metrics::counter!("consumer_messages_total", "group" => group, "outcome" => "duplicate")
                .increment(duplicates);
        }
        Ok(())
    }

    /// Claims the items' message ids in the inbox: one statement for a batch, the plain
    /// insert for a single message.
    async fn claim(
        &self,
        tx: &mut PgConnection,
        items: &[Item<H::Message>],
    ) -> Result<Vec<Claim>, Failure> {
        let messages: Vec<(uuid::Uuid, Source<'_>)> = items
            .iter()
            .filter_map(|item| {
                let incoming = item.decoded.as_ref().ok()?;
                let source = Source {
                    topic: &item.raw.topic,
                    partition: item.raw.partition,
                    offset: item.raw.offset,
                };
                Some((*incoming.meta().message_id.as_uuid(), source))
            })
            .collect();
        Ok(match messages.as_slice() {
            [(message_id, source)] => vec![self.inbox.record(tx, *message_id, *source).await?],
            _ => self.inbox.record_batch(tx, &messages).await?,
        })
    }

    /// Apply one message with the retry policy; dead-letter it when it cannot be applied.
    async fn process_one(
        &self,
        consumer: &KafkaConsumer,
        item: &Item<H::Message>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let first_failed_at = chrono::Utc::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome = match &item.decoded {
                Ok(_) => self.apply(std::slice::from_ref(item)).await,
                Err(e) => Err(Failure {
                    class: ErrorClass::Permanent,
                    kind: FailureKind::Decode,
                    error: e.to_string(),
                }),
            };
            let failure = match outcome {
                Ok(()) => {
                    self.store_offset(consumer, &item.raw);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            let give_up = match failure.class {
                ErrorClass::Permanent => Some(failure.kind),
                ErrorClass::Transient if attempt >= self.config.max_attempts => {
                    Some(FailureKind::RetriesExhausted)
                }
                _ => None,
            };
            match give_up {
                Some(kind) => {
                    tracing::error!(parent: &item.span, error = %failure.error, ?kind, attempt, "dead-lettering message");
                    let letter = dead_letters::Letter {
                        error: &failure.error,
                        kind,
                        group: &self.config.group_id,
                        attempts: attempt,
                        first_failed_at,
                    };
                    self.dead_letter(&item.raw, &letter, shutdown).await?;
                    self.store_offset(consumer, &item.raw);
                    metrics::counter!("consumer_messages_total", "group" => self.config.group_id.clone(), "outcome" => "dead_lettered").increment(1);
                    return Ok(());
                }
                None => {
                    tracing::warn!(parent: &item.span, error = %failure.error, class = ?failure.class, attempt, "handling failed; retrying");
                    self.pause(attempt, shutdown).await?;
                }
            }
        }
    }

    /// Publish the original record to the dead-letter topic and wait for the broker's
    /// acknowledgement (retrying while the broker is unavailable): the offset may only
    /// advance once the message is safely parked.
    async fn dead_letter(
        &self,
        raw: &Raw,
        letter: &dead_letters::Letter<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut headers = raw.headers.clone();
        letter.write_headers(&mut headers, &raw.topic, raw.partition, raw.offset);
        let kafka_headers = headers::to_kafka_headers(&headers);
        let mut attempt = 0;
        loop {
            let mut record =
                FutureRecord::to(&self.dead_letter_topic).headers(kafka_headers.clone());
            if let Some(key) = &raw.key {
                record = record.key(key);
            }
            if let Some(payload) = &raw.payload {
                record = record.payload(payload);
            }
            match self.dead_letters.send(record, Duration::from_secs(5)).await {
                Ok(_) => return Ok(()),
                Err((error, _)) => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "publishing a dead letter failed; retrying");
                    self.pause(attempt, shutdown).await?;
                }
            }
        }
    }

    fn store_offset(&self, consumer: &KafkaConsumer, raw: &Raw) {
        // librdkafka's rd_kafka_offset_store stores `offset + 1` (the next one to read), so
        // this passes the offset of the message itself.
        if let Err(error) = consumer.store_offset(&raw.topic, raw.partition, raw.offset) {
            // The partition was revoked meanwhile: its next owner redelivers, the inbox skips.
            tracing::debug!(%error, partition = raw.partition, "offset not stored");
        }
    }

    async fn pause(&self, attempt: u32, shutdown: &CancellationToken) -> Result<(), Stopped> {
        tokio::select! {
            _ = shutdown.cancelled() => Err(Stopped),
            _ = tokio::time::sleep(self.backoff.delay(attempt)) => Ok(()),
        }
    }
}
