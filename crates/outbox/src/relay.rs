//! The relay: publishes committed outbox rows to Kafka and marks them delivered.
//!
//! # Order
//! Per key, Kafka must see messages in the order their transactions committed. Two facts
//! give that:
//! 1. Within one database, every transaction that enqueues for a key also updates that
//!    key's aggregate row (the order, the saga, the reservation), so such transactions are
//!    serialised by the row lock and take their `id`s (a sequence) in commit order.
//! 2. Batches are serialised across relay instances by a **session advisory lock** held on
//!    one connection for the whole batch: a batch is read (in `id` order), published with
//!    the idempotent producer, acknowledged by the broker and marked delivered while the
//!    lock is held. A second relay cannot start a batch until the first's is acknowledged
//!    and marked, so it never publishes a later row of a key ahead of an earlier one. A
//!    standby relay costs one `pg_try_advisory_lock` per wake-up; if the active one dies,
//!    its session ends, the lock frees, and the standby takes over the unmarked rows.
//!
//! # No transaction open while publishing
//! Reading the rows and marking them are two short autocommit statements; the wait for the
//! broker's acknowledgement happens between them, outside any transaction. A relay stuck
//! on an unreachable broker (up to `message.timeout.ms`) therefore holds no snapshot and no
//! transaction id, so it never holds back the xmin horizon that the order projector's
//! read-your-writes check waits on. (A transaction-scoped lock would need the transaction
//! open across the publish.) A connection that leaves a batch without unlocking (an error,
//! an aborted task) is closed instead of going back to the pool, which frees the lock.
//!
//! Within a batch the idempotent producer (`max.in.flight` 5) keeps per-partition order
//! through retries. If a row fails to publish, later rows of the same key in that batch are
//! not marked delivered either, so they are republished after it, never before.
//!
//! # Waking up
//! `LISTEN saga_outbox` (a statement trigger notifies on insert) wakes the relay at once;
//! a poll every `poll_interval` covers lost notifications and a dropped listener connection.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_kafka::KafkaConfig;
use saga_kafka::headers::{HeaderMap, to_kafka_headers};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio_util::sync::CancellationToken;

use crate::OutboxError;

/// Advisory lock id of the relay: one namespace per database, so one number suffices.
/// (The bytes of "outbox!!" as an i64.)
const RELAY_LOCK: i64 = i64::from_be_bytes(*b"outbox!!");
const CHANNEL: &str = "saga_outbox";

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Rows claimed and published per transaction.
    pub batch_size: i64,
    /// Poll this often even without a notification.
    pub poll_interval_ms: u64,
    /// Listen for insert notifications (off: polling only).
    pub listen: bool,
    /// Delivered rows are kept this long (for inspection), then purged.
    pub retention_secs: u64,
    /// How often to purge and refresh the pending-rows gauges.
    pub housekeeping_interval_secs: u64,
    /// At most one pass per this many milliseconds: a wake-up within this time of the
    /// previous pass waits out the rest, so under load the rows of many commits go out in one
    /// read, one produce and one mark instead of a pass per commit (at full load the order
    /// service's relay made a pass, four statements, per placed order). A wake-up after a
    /// quiet spell publishes at once, so an idle hop is not lengthened. 0: no pacing.
    pub linger_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval_ms: 500,
            listen: true,
            retention_secs: 24 * 3600,
            housekeeping_interval_secs: 10,
            linger_ms: 10,
        }
    }
}

/// What is waiting to be published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxStats {
    pub pending: i64,
    /// Age of the oldest undelivered row; zero when none.
    pub oldest_pending_age: Duration,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    message_key: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<HeaderMap>,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    config: RelayConfig,
    /// Rows hold logical topic names; the wire name adds the configured prefix.
    topic_prefix: String,
}

/// How one batch went.
enum Batch {
    /// Another relay holds the lock.
    Busy,
    Published {
        claimed: usize,
        failed: usize,
    },
}

impl Relay {
    pub fn new(
        pool: PgPool,
        kafka: &KafkaConfig,
        config: RelayConfig,
    ) -> Result<Self, OutboxError> {
        Ok(Self::with_producer(pool, kafka, config, kafka.producer()?))
    }

    /// A relay publishing through `producer` (the service's one producer, shared with its
    /// consumers' dead letters: see `saga_consumer::Consumer::with_producer`). It must have
    /// `kafka`'s producer settings (idempotence, acks=all): ordering depends on them.
    pub fn with_producer(
        pool: PgPool,
        kafka: &KafkaConfig,
        config: RelayConfig,
        producer: FutureProducer,
    ) -> Self {
        Self {
            pool,
            producer,
            config,
            topic_prefix: kafka.topic_prefix.clone(),
        }
    }

    /// Publish until nothing is pending (waiting for another relay's batch if one is in
    /// flight). Returns the number of rows this call published. For tests and tools that
    /// need a deterministic flush.
    pub async fn drain_once(&self) -> Result<usize, OutboxError> {
        let mut published = 0;
        loop {
            match self.publish_batch(true).await? {
                Batch::Published { claimed: 0, .. } => return Ok(published),
                Batch::Published { claimed, failed } => {
                    published += claimed - failed;
                    if failed > 0 {
                        return Ok(published);
                    }
                }
                Batch::Busy => unreachable!("blocking lock never reports busy"),
            }
        }
    }

    /// Run until `shutdown`: publish on every notification and every poll interval, purge
    /// delivered rows and export the pending gauges on the housekeeping interval.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), OutboxError> {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut listener = if self.config.listen {
            self.listen().await
        } else {
            None
        };
        let mut housekeeping = tokio::time::interval(Duration::from_secs(
            self.config.housekeeping_interval_secs.max(1),
        ));
        let mut failures: u32 = 0;
        let linger = Duration::from_millis(self.config.linger_ms);
        let mut last_pass: Option<Instant> = None;
        loop {
            if let Some(at) = last_pass {
                let since = at.elapsed();
                if since < linger {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(linger - since) => {}
                    }
                }
            }
            // Notifications already received are all covered by the pass about to run:
            // left queued, each would wake a pass of its own that finds nothing (three
            // statements each: lock, read, unlock).
            if let Some(l) = listener.as_mut() {
                while l.next_buffered().is_some() {}
            }
            let drained = self.drain_available().await;
            last_pass = Some(Instant::now());
            let pause = match drained {
                Ok(()) => {
                    failures = 0;
                    poll
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "outbox relay: publishing failed; backing off");
                    backoff(failures).min(poll.max(Duration::from_secs(5)))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = housekeeping.tick() => self.housekeeping().await,
                _ = tokio::time::sleep(pause) => {}
                notified = wait_notification(&mut listener), if failures == 0 => {
                    if notified.is_err() {
                        // The listener reconnects on the next recv; polling covers the gap.
                        tracing::debug!("outbox relay: listener connection lost");
                    }
                }
            }
        }
    }

    /// Publish batches until one comes back short or another relay is active.
    async fn drain_available(&self) -> Result<(), OutboxError> {
        loop {
            match self.publish_batch(false).await? {
                Batch::Busy => return Ok(()),
                Batch::Published { claimed, failed } => {
                    if failed > 0 {
                        return Err(OutboxError::Unacknowledged { failed, claimed });
                    }
                    if (claimed as i64) < self.config.batch_size {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let attempt = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match attempt.await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "outbox relay: LISTEN failed; polling only");
                None
            }
        }
    }

    /// Read, publish, acknowledge and mark one batch under the relay lock, with no
    /// transaction open while the broker is waited on (see the module docs for why).
    async fn publish_batch(&self, wait_for_lock: bool) -> Result<Batch, OutboxError> {
        let mut lock = LockedConnection::new(self.pool.acquire().await?);
        if wait_for_lock {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .execute(lock.conn())
                .await?;
        } else {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(lock.conn())
                .await?;
            if !locked {
                lock.release_unlocked();
                return Ok(Batch::Busy);
            }
        }
        // Autocommit: the snapshot of this statement ends with it. No `FOR UPDATE`: the lock
        // keeps every other relay out until these rows are marked.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, topic, message_key, payload, headers, created_at FROM outbox
             WHERE delivered_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.config.batch_size)
        .fetch_all(lock.conn())
        .await?;
        if rows.is_empty() {
            lock.unlock().await?;
            return Ok(Batch::Published {
                claimed: 0,
                failed: 0,
            });
        }
        let started = Instant::now();
        let outcomes = self.publish(&rows).await;
        let failed = self.mark(lock.conn(), &rows, &outcomes).await?;
        lock.unlock().await?;

        let published = rows.len() - failed;
        metrics::counter!("outbox_published_total").increment(published as u64);
        let now = chrono::Utc::now();
        for row in &rows {
            let delay = (now - row.created_at).to_std().unwrap_or_default();
            metrics::histogram!("outbox_commit_to_publish_seconds").record(delay.as_secs_f64());
        }
        tracing::debug!(
            published,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "outbox batch"
        );
        Ok(Batch::Published {
            claimed: rows.len(),
            failed,
        })
    }

    /// Enqueue every row in order, then wait for every delivery report.
    async fn publish(&self, rows: &[Row]) -> Vec<Result<(), String>> {
        let mut pending = Vec::with_capacity(rows.len());
        let topics: Vec<String> = rows
            .iter()
            .map(|r| format!("{}{}", self.topic_prefix, r.topic))
            .collect();
        for (row, topic) in rows.iter().zip(&topics) {
            let record = FutureRecord::to(topic)
                .key(&row.message_key)
                .payload(&row.payload)
                .headers(to_kafka_headers(&row.headers));
            pending.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| e.to_string()),
            );
        }
        join_all(pending.into_iter().map(|enqueued| async move {
            match enqueued {
                Err(e) => Err(e),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("producer dropped the delivery report".to_owned()),
                },
            }
        }))
        .await
    }

    /// Mark acknowledged rows delivered, except those behind a failed row of the same key
    /// (they must go out after it). Returns how many rows stay pending.
    async fn mark(
        &self,
        conn: &mut PgConnection,
        rows: &[Row],
        outcomes: &[Result<(), String>],
    ) -> Result<usize, OutboxError> {
        let mut blocked_keys: HashSet<(&str, &str)> = HashSet::new();
        let mut delivered = Vec::with_capacity(rows.len());
        let mut failed_ids = Vec::new();
        let mut failed_errors = Vec::new();
        for (row, outcome) in rows.iter().zip(outcomes) {
            let key = (row.topic.as_str(), row.message_key.as_str());
            match outcome {
                Ok(()) if !blocked_keys.contains(&key) => delivered.push(row.id),
                Ok(()) => {}
                Err(error) => {
                    blocked_keys.insert(key);
                    failed_ids.push(row.id);
                    failed_errors.push(error.clone());
                }
            }
        }
        sqlx::query(
            "UPDATE outbox SET delivered_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
        )
        .bind(&delivered)
        .execute(&mut *conn)
        .await?;
        if !failed_ids.is_empty() {
            tracing::warn!(failed = failed_ids.len(), first_error = %failed_errors[0], "outbox: some messages were not acknowledged");
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = e.error
                 FROM UNNEST($1::bigint[], $2::text[]) AS e(id, error) WHERE outbox.id = e.id",
            )
            .bind(&failed_ids)
            .bind(&failed_errors)
            .execute(&mut *conn)
            .await?;
        }
        Ok(rows.len() - delivered.len())
    }

    /// Pending rows and the age of the oldest: the outbox's health at a glance.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        stats(&self.pool).await
    }

    async fn housekeeping(&self) {
        match stats(&self.pool).await {
            Ok(s) => {
                metrics::gauge!("outbox_pending_messages").set(s.pending as f64);
                metrics::gauge!("outbox_oldest_pending_age_seconds")
                    .set(s.oldest_pending_age.as_secs_f64());
            }
            Err(error) => tracing::warn!(%error, "outbox stats failed"),
        }
        let retention = Duration::from_secs(self.config.retention_secs);
        if let Err(error) = purge_delivered(&self.pool, retention).await {
            tracing::warn!(%error, "outbox purge failed; will retry");
        }
    }
}

/// Pending rows and the age of the oldest.
pub async fn stats(pool: &PgPool) -> Result<OutboxStats, OutboxError> {
    let (pending, age): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
         FROM outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(OutboxStats {
        pending,
        oldest_pending_age: Duration::from_secs_f64(age.unwrap_or(0.0).max(0.0)),
    })
}

/// Delete delivered rows older than `retention`, in chunks so no statement holds locks
/// for long. Returns the number deleted.
pub async fn purge_delivered(pool: &PgPool, retention: Duration) -> Result<u64, OutboxError> {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE delivered_at < $1 LIMIT 5000)",
        )
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 5000 {
            return Ok(total);
        }
    }
}

/// A pooled connection that may hold the relay's session lock. Unless [`Self::unlock`] (or
/// [`Self::release_unlocked`]) ran, dropping it closes the connection instead of returning
/// it to the pool: a pooled session still holding the lock would keep every relay out.
struct LockedConnection {
    conn: PoolConnection<Postgres>,
    released: bool,
}

impl LockedConnection {
    fn new(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn,
            released: false,
        }
    }

    fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// The lock was not taken: the connection may go back to the pool as it is.
    fn release_unlocked(&mut self) {
        self.released = true;
    }

    async fn unlock(&mut self) -> Result<(), OutboxError> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RELAY_LOCK)
            .execute(&mut *self.conn)
            .await?;
        self.released = true;
        Ok(())
    }
}

impl Drop for LockedConnection {
    fn drop(&mut self) {
        if !self.released {
            self.conn.close_on_drop();
        }
    }
}

async fn wait_notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// 100 ms doubling up to ~25 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(8))
}
