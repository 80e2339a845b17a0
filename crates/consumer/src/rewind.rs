//! Reprocessing: rewind a stopped consumer group's committed offsets on one topic to an
//! offset or a point in time (Kafka's `kafka-consumer-groups --reset-offsets`), so a fixed
//! consumer runs over those messages again. `saga-rewind` and `cargo xtask rewind` are the
//! command-line faces; docs/messaging.md ("Reprocessing") is the operator procedure.
//!
//! Safety comes from the inbox. Rewinding redelivers the range; every message the group
//! already applied finds its inbox row and is dropped, so effects (stock, money, saga steps)
//! happen once. What runs again is what has no inbox row: messages that were dead-lettered
//! (a fixed handler now gets to apply them) and, with **reapply**, the range's inbox rows,
//! which are deleted so the handler applies those messages again. Reapply is only allowed for
//! a group declared a [`HandlerKind::Projection`] (its handler rewrites derived data and moves
//! no money or stock); for anything else it is refused before anything is changed.
//!
//! Rewinding only goes back: a partition whose target is at or past its committed offset is
//! left unchanged (skipping messages is not reprocessing). A target before the log start is
//! raised to the log start.
//!
//! The group must be stopped: a running member would commit its own position over the
//! rewound one. Members that joined with `subscribe()` are found through the broker and
//! refused; consumers that `assign()` partitions (the local stack's services on tansu) are
//! not members the broker reports, so for them the caller must make sure the service is
//! stopped (`cargo xtask rewind` checks the stack's process).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use saga_kafka::KafkaConfig;
use sqlx::PgPool;

const TIMEOUT: Duration = Duration::from_secs(10);

/// What a consumer group's handler does, as declared by whoever owns the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerKind {
    /// Moves money or stock, drives a saga, or sends messages: every message must take
    /// effect at most once. Reapply is refused.
    Effects,
    /// Rewrites derived data (a read model) from the messages and nothing else: applying a
    /// message again is safe, so reapply may clear its inbox entries.
    Projection,
}

/// Where to rewind each partition to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The same offset on every partition (the next message to read).
    Offset(i64),
    /// The first message with a timestamp at or after this instant, per partition.
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub group: String,
    /// The full topic name (with any prefix).
    pub topic: String,
    pub target: Target,
    pub handler: HandlerKind,
    /// Delete the range's inbox entries so the messages are applied again (projections only).
    pub reapply: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    #[error(
        "reapply refused for consumer group {group}: its handler is not declared a projection \
         (it moves money or stock or drives the saga), so applying a message twice would double \
         an effect; rewind without reapply: the inbox drops what was already applied"
    )]
    ReapplyRefused { group: String },
    #[error("reapply needs the database of the group's inbox")]
    ReapplyNeedsDatabase,
    #[error(
        "consumer group {group} has live members ({members}); stop its consumers before \
         rewinding, or they commit their position over the rewound one"
    )]
    GroupActive { group: String, members: String },
    #[error("topic {0} does not exist or has no partitions")]
    NoSuchTopic(String),
    #[error("offset {0} is negative")]
    NegativeOffset(i64),
    #[error("the broker did not keep the rewound offsets: {0}")]
    NotApplied(String),
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPlan {
    pub partition: i32,
    pub log_start: i64,
    pub log_end: i64,
    /// The group's committed offset (the next message it reads); `None`: never committed
    /// (the group starts at the log start, so there is nothing to rewind).
    pub current: Option<i64>,
    /// The committed offset after the rewind (`== current`: unchanged).
    pub target: Option<i64>,
    /// Inbox entries of the group for offsets in `target..current`, when the database was
    /// given: messages already applied, which the inbox drops (or, with reapply, deletes).
    pub already_applied: Option<i64>,
}

impl PartitionPlan {
    /// Messages delivered again.
    pub fn reprocessed(&self) -> i64 {
        match (self.current, self.target) {
            (Some(c), Some(t)) => c - t,
            _ => 0,
        }
    }

    fn changes(&self) -> bool {
        self.reprocessed() > 0
    }
}

/// What a rewind does (or did), per partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub group: String,
    pub topic: String,
    pub target: Target,
    pub reapply: bool,
    pub partitions: Vec<PartitionPlan>,
}

impl Plan {
    pub fn reprocessed(&self) -> i64 {
        self.partitions.iter().map(PartitionPlan::reprocessed).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target {
            Target::Offset(o) => format!("offset {o}"),
            Target::Time(t) => format!("time {}", t.to_rfc3339()),
        };
        writeln!(
            f,
            "group {} topic {} to {target}{}",
            self.group,
            self.topic,
            if self.reapply { " (reapply)" } else { "" }
        )?;
        writeln!(
            f,
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>15}",
            "partition", "start", "end", "current", "target", "reprocess", "in inbox"
        )?;
        let show = |o: Option<i64>| o.map_or("-".to_owned(), |o| o.to_string());
        for p in &self.partitions {
            let inbox = match (p.already_applied, self.reapply) {
                (None, _) => "?".to_owned(),
                (Some(n), false) => format!("{n} dropped"),
                (Some(n), true) => format!("{n} cleared"),
            };
            writeln!(
                f,
                "{:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>15}",
                p.partition,
                p.log_start,
                p.log_end,
                show(p.current),
                if p.changes() {
                    show(p.target)
                } else {
                    "unchanged".to_owned()
                },
                p.reprocessed(),
                inbox,
            )?;
        }
        let applied: Option<i64> = self.partitions.iter().map(|p| p.already_applied).sum();
        write!(
            f,
            "{} messages would be delivered again",
            self.reprocessed()
        )?;
        match (applied, self.reapply) {
            (Some(n), false) => write!(
                f,
                "; {n} already applied (the inbox drops them), {} without an inbox entry run",
                self.reprocessed() - n
            ),
            (Some(n), true) => write!(f, "; {n} inbox entries cleared: all of them run again"),
            (None, _) => write!(f, " (no database given: inbox entries not counted)"),
        }
    }
}

/// The consumers of `group` the broker reports as members (those that `subscribe()`d):
/// `Ok(None)` when the broker could not say (tansu 0.6.0 drops the connection on
/// DescribeGroups, and does not list groups whose consumers only `assign()`).
pub async fn live_members(
    kafka: &KafkaConfig,
    group: &str,
) -> Result<Option<Vec<String>>, RewindError> {
    let consumer = admin_consumer(kafka, group)?;
    let group = group.to_owned();
    blocking(move || {
        // ListGroups first: a group it does not list has no members to describe.
        match consumer.fetch_group_list(None, TIMEOUT) {
            Ok(all) if !all.groups().iter().any(|g| g.name() == group) => {
                return Ok(Some(Vec::new()));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "ListGroups failed: live members unknown");
                return Ok(None);
            }
        }
        match consumer.fetch_group_list(Some(group.as_str()), TIMEOUT) {
            Ok(list) => Ok(Some(
                list.groups()
                    .iter()
                    .filter(|g| g.name() == group)
                    .flat_map(|g| {
                        g.members()
                            .iter()
                            .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                    })
                    .collect(),
            )),
            Err(error) => {
                tracing::warn!(%error, %group, "DescribeGroups failed: live members unknown");
                Ok(None)
            }
        }
    })
    .await
}

/// The plan for `request`: nothing is changed. With `inbox`, the range's inbox entries
/// are counted.
pub async fn plan(
    kafka: &KafkaConfig,
    inbox: Option<&PgPool>,
    request: &Request,
) -> Result<Plan, RewindError> {
    if let Target::Offset(o) = request.target
        && o < 0
    {
        return Err(RewindError::NegativeOffset(o));
    }
    let consumer = admin_consumer(kafka, &request.group)?;
    let topic = request.topic.clone();
    let target = request.target;
    let mut partitions = blocking(move || plan_partitions(&consumer, &topic, target)).await?;
    if let Some(pool) = inbox {
        for p in &mut partitions {
            p.already_applied = Some(match (p.target, p.current) {
                (Some(from), Some(to)) if from < to => {
                    inbox_in_range(pool, &request.group, &request.topic, p.partition, from, to)
                        .await?
                }
                _ => 0,
            });
        }
    }
    Ok(Plan {
        group: request.group.clone(),
        topic: request.topic.clone(),
        target: request.target,
        reapply: request.reapply,
        partitions,
    })
}

/// Rewinds: checks that reapply is allowed and that the group has no live members, plans,
/// commits the target offsets, and with reapply deletes the range's inbox entries. Returns
/// the plan that was carried out.
pub async fn rewind(
    kafka: &KafkaConfig,
    inbox: Option<&PgPool>,
    request: &Request,
) -> Result<Plan, RewindError> {
    check(kafka, inbox, request).await?;
    let plan = plan(kafka, inbox, request).await?;
    let mut offsets = TopicPartitionList::new();
    for p in plan.partitions.iter().filter(|p| p.changes()) {
        if let Some(target) = p.target {
            offsets.add_partition_offset(&plan.topic, p.partition, Offset::Offset(target))?;
        }
    }
    if offsets.count() > 0 {
        let consumer = admin_consumer(kafka, &plan.group)?;
        let expected = offsets.clone();
        blocking(move || {
            consumer.commit(&offsets, CommitMode::Sync)?;
            let committed = consumer.committed_offsets(expected.clone(), TIMEOUT)?;
            let kept: BTreeMap<i32, Offset> = committed
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect();
            for e in expected.elements() {
                if kept.get(&e.partition()) != Some(&e.offset()) {
                    return Err(RewindError::NotApplied(format!(
                        "partition {} is at {:?}, not {:?}",
                        e.partition(),
                        kept.get(&e.partition()),
                        e.offset()
                    )));
                }
            }
            Ok(())
        })
        .await?;
    }
    // After the offsets: should this fail, the rewind still happened and the inbox drops the
    // range (nothing twice); running the same rewind again clears it.
    if request.reapply
        && let Some(pool) = inbox
    {
        let mut tx = pool.begin().await?;
        for p in plan.partitions.iter().filter(|p| p.changes()) {
            if let (Some(from), Some(to)) = (p.target, p.current) {
                sqlx::query(
                    "DELETE FROM inbox WHERE consumer_group = $1 AND topic = $2 \
                     AND kafka_partition = $3 AND kafka_offset >= $4 AND kafka_offset < $5",
                )
                .bind(&plan.group)
                .bind(&plan.topic)
                .bind(p.partition)
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
    }
    tracing::info!(group = %plan.group, topic = %plan.topic, reprocessed = plan.reprocessed(), reapply = plan.reapply, "consumer group rewound");
    Ok(plan)
}

/// The refusals, before anything is read or changed: reapply for a group that is not a
/// projection, reapply without the inbox's database, a group with live members.
pub async fn check(
    kafka: &KafkaConfig,
    inbox: Option<&PgPool>,
    request: &Request,
) -> Result<(), RewindError> {
    if request.reapply && request.handler != HandlerKind::Projection {
        return Err(RewindError::ReapplyRefused {
            group: request.group.clone(),
        });
    }
    if request.reapply && inbox.is_none() {
        return Err(RewindError::ReapplyNeedsDatabase);
    }
    match live_members(kafka, &request.group).await? {
        Some(members) if !members.is_empty() => Err(RewindError::GroupActive {
            group: request.group.clone(),
            members: members.join(", "),
        }),
        // Not reported (assign()ing consumers, or a broker that cannot describe the group):
        // stopping the service is the caller's part (module docs).
        _ => Ok(()),
    }
}

fn plan_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    target: Target,
) -> Result<Vec<PartitionPlan>, RewindError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ids.is_empty() {
        return Err(RewindError::NoSuchTopic(topic.to_owned()));
    }
    let mut list = TopicPartitionList::new();
    for id in &ids {
        list.add_partition(topic, *id);
    }
    let committed: BTreeMap<i32, Option<i64>> = consumer
        .committed_offsets(list, TIMEOUT)?
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect();
    let by_time = match target {
        Target::Time(t) => Some(offsets_for_time(consumer, topic, &ids, t)?),
        Target::Offset(_) => None,
    };
    let mut plans = Vec::new();
    for id in ids {
        let (log_start, log_end) = consumer.fetch_watermarks(topic, id, TIMEOUT)?;
        let current = committed.get(&id).copied().flatten();
        let wanted = match (&by_time, target) {
            (Some(times), _) => times.get(&id).copied().unwrap_or(log_end),
            (None, Target::Offset(o)) => o,
            (None, Target::Time(_)) => unreachable!("resolved above"),
        };
        // Never forward (that skips messages), never before the log start.
        let target = current.map(|c| wanted.max(log_start).min(c));
        plans.push(PartitionPlan {
            partition: id,
            log_start,
            log_end,
            current,
            target,
            already_applied: None,
        });
    }
    Ok(plans)
}

/// Per partition, the first offset whose message timestamp is at or after `at` (the log
/// end when there is none).
///
/// tansu 0.6.0 answers a time after every message with offset 0 instead of Kafka's -1, so
/// an answer at the log start is checked against that message's own timestamp.
fn offsets_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    ids: &[i32],
    at: DateTime<Utc>,
) -> Result<BTreeMap<i32, i64>, RewindError> {
    let mut query = TopicPartitionList::new();
    for id in ids {
        query.add_partition_offset(topic, *id, Offset::Offset(at.timestamp_millis()))?;
    }
    let answer = consumer.offsets_for_times(query, TIMEOUT)?;
    let mut offsets = BTreeMap::new();
    for e in answer.elements() {
        let (log_start, log_end) = consumer.fetch_watermarks(topic, e.partition(), TIMEOUT)?;
        let offset = match e.offset() {
            Offset::Offset(o) if o <= log_start && log_end > log_start => {
                match timestamp_at(consumer, topic, e.partition(), log_start)? {
                    Some(ts) if ts >= at.timestamp_millis() => log_start,
                    _ => log_end,
                }
            }
            Offset::Offset(o) => o,
            _ => log_end,
        };
        offsets.insert(e.partition(), offset);
    }
    Ok(offsets)
}

/// The timestamp (ms) of the message at `offset`, read with a throw-away assignment.
fn timestamp_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<i64>, RewindError> {
    let mut one = TopicPartitionList::new();
    one.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&one)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let found = loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= offset => {
                break m.timestamp().to_millis();
            }
            Some(Err(e)) => return Err(e.into()),
            _ if std::time::Instant::now() > deadline => break None,
            _ => {}
        }
    };
    consumer.unassign()?;
    Ok(found)
}

async fn inbox_in_range(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM inbox WHERE consumer_group = $1 AND topic = $2 \
         AND kafka_partition = $3 AND kafka_offset >= $4 AND kafka_offset < $5",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await
}

/// A consumer in `group` that never joins it: it only reads and commits offsets.
fn admin_consumer(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer, RewindError> {
    let mut config = kafka.consumer_config(group);
    config.set("enable.auto.commit", "false");
    Ok(config.create()?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RewindError> + Send + 'static,
) -> Result<T, RewindError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("rewind task panicked")
}
