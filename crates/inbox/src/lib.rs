//! The inbox makes at-least-once delivery effectively-once in effect.
//!
//! Kafka may deliver a message again (a crash after the effect committed but before the
//! offset was committed, a rebalance, a relay that republished). The consumer runtime calls
//! [`Inbox::record`] inside the transaction that applies the message's effect: the insert
//! either claims the message id for this consumer group, or finds it already claimed and
//! the runtime skips the handler. Because the claim and the effect commit together, there is
//! no window in which one exists without the other. Two consumers racing on the same message
//! (a rebalance hand-over) serialise on the primary key: the second waits for the first's
//! transaction and then sees the conflict.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The inbox table (migration versions 20001..).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where a message came from, stored for diagnosis.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Outcome of claiming a message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time this group sees the message: apply its effect in this transaction.
    New,
    /// Already applied by this group: skip it (its offset may still advance).
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct Inbox {
    consumer_group: String,
}

impl Inbox {
    pub fn new(consumer_group: impl Into<String>) -> Self {
        Self {
            consumer_group: consumer_group.into(),
        }
    }

    pub fn consumer_group(&self) -> &str {
        &self.consumer_group
    }

    /// Claim a batch of messages within the caller's transaction with one statement (a
    /// consumer's batch of messages is applied in one transaction, and one insert per message
    /// was most of the statements the inbox cost). The answer is in the order of `messages`;
    /// a message id that occurs twice in the batch is `New` the first time and `Duplicate`
    /// after, as if each had been claimed on its own.
    pub async fn record_batch(
        &self,
        tx: &mut PgConnection,
        messages: &[(Uuid, Source<'_>)],
    ) -> Result<Vec<Claim>, sqlx::Error> {
        let ids: Vec<Uuid> = messages.iter().map(|(id, _)| *id).collect();
        let topics: Vec<&str> = messages.iter().map(|(_, s)| s.topic).collect();
        let partitions: Vec<i32> = messages.iter().map(|(_, s)| s.partition).collect();
        let offsets: Vec<i64> = messages.iter().map(|(_, s)| s.offset).collect();
        // ON CONFLICT DO NOTHING also skips a row that conflicts with one inserted earlier by
        // the same statement, so a repeated id is inserted (and returned) once.
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO inbox (consumer_group, message_id, topic, kafka_partition, kafka_offset)
             SELECT $1, m.id, m.topic, m.part, m.off
             FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::int8[])
                  WITH ORDINALITY AS m(id, topic, part, off, n)
             ORDER BY m.n
             ON CONFLICT (consumer_group, message_id) DO NOTHING
             RETURNING message_id",
        )
        .bind(&self.consumer_group)
        .bind(&ids)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .fetch_all(tx)
        .await?;
        let mut new: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
        Ok(ids
            .iter()
            .map(|id| {
                if new.remove(id) {
                    Claim::New
                } else {
                    Claim::Duplicate
                }
            })
            .collect())
    }

    /// Claim `message_id` within the caller's transaction.
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        message_id: Uuid,
        source: Source<'_>,
    ) -> Result<Claim, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer_group, message_id, topic, kafka_partition, kafka_offset)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (consumer_group, message_id) DO NOTHING",
        )
        .bind(&self.consumer_group)
        .bind(message_id)
        .bind(source.topic)
        .bind(source.partition)
        .bind(source.offset)
        .execute(tx)
        .await?
        .rows_affected();
        Ok(if inserted == 1 {
            Claim::New
        } else {
            Claim::Duplicate
        })
    }

    /// Has this group applied the message? (For tests and diagnosis.)
    pub async fn contains(&self, pool: &PgPool, message_id: Uuid) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer_group = $1 AND message_id = $2)",
        )
        .bind(&self.consumer_group)
        .bind(message_id)
        .fetch_one(pool)
        .await
    }
}

/// Delete inbox rows older than `retention`. Retention must exceed the longest time a
/// message can be redelivered after it was first applied (offset commit interval, relay
/// republish after a crash, a dead letter replayed by hand), or a late duplicate would be
/// applied again; days, not minutes.
pub async fn purge_older_than(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    Ok(sqlx::query("DELETE FROM inbox WHERE received_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Purge on a schedule until `shutdown`.
pub async fn run_retention(
    pool: PgPool,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match purge_older_than(&pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "inbox retention"),
            Err(error) => tracing::warn!(%error, "inbox retention failed; will retry"),
        }
    }
}
