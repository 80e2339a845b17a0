//! The CQRS read model `order_summaries`, derived from `order_events` by a projector.
//!
//! The projector reads events in `(tx_id, global_seq)` order and only from transactions
//! older than every transaction still running (`pg_snapshot_xmin`). A `bigserial` is handed
//! out at insert but committed in any order, so a projector that simply followed
//! `global_seq > checkpoint` would skip an event whose transaction committed late; with
//! the xmin horizon nothing can appear behind the checkpoint any more. The checkpoint row
//! is locked for the batch, so several instances can run projectors safely.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use saga_contracts::ids::{CustomerId, OrderId};
use saga_contracts::{Currency, Money};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{OrderEvent, OrderStatus};
use crate::store::{StoreError, decode_event};

pub const PROJECTION: &str = "order_summaries";
const BATCH: i64 = 500;
/// `order.projector_linger_ms` unless configured.
pub const DEFAULT_LINGER_MS: u64 = 20;

/// One row of the read model.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSummary {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub rejection_reason: Option<String>,
    pub total: Money,
    pub item_count: i32,
    pub version: i32,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Apply the next batch of events to the read model within `conn`'s transaction.
/// Returns how many events were applied (0: caught up).
pub async fn project_batch(conn: &mut PgConnection) -> Result<usize, StoreError> {
    let checkpoint = sqlx::query(
        "SELECT last_tx_id::text AS tx, last_seq FROM projection_checkpoints \
         WHERE name = $1 FOR UPDATE",
    )
    .bind(PROJECTION)
    .fetch_one(&mut *conn)
    .await?;
    let last_tx: String = checkpoint.try_get("tx")?;
    let last_seq: i64 = checkpoint.try_get("last_seq")?;

    let rows = sqlx::query(
        "SELECT order_id, version, type, schema_version, payload, recorded_at, global_seq, tx_id::text AS tx \
         FROM order_events \
         WHERE (tx_id, global_seq) > ($1::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, global_seq LIMIT $3",
    )
    .bind(&last_tx)
    .bind(last_seq)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let new_tx: String = last.try_get("tx")?;
    let new_seq: i64 = last.try_get("global_seq")?;

    let mut changes = Changes::default();
    for row in &rows {
        let order_id: Uuid = row.try_get("order_id")?;
        let version: i32 = row.try_get("version")?;
        let at: DateTime<Utc> = row.try_get("recorded_at")?;
        let event = decode_event(
            row.try_get("type")?,
            row.try_get("schema_version")?,
            row.try_get("payload")?,
        )?;
        changes.fold(order_id, version, at, &event);
    }
    changes.write(&mut *conn).await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET last_tx_id = $2::text::xid8, last_seq = $3, \
         updated_at = now() WHERE name = $1",
    )
    .bind(PROJECTION)
    .bind(&new_tx)
    .bind(new_seq)
    .execute(&mut *conn)
    .await?;
    Ok(rows.len())
}

/// A batch of events folded into what the read model must become: one entry per order, in
/// first-seen order, with its latest status; an order placed in the batch also carries the
/// placement (its row is inserted), the others only change status. Written with at most two
/// statements whatever the batch size: a statement per event was the order database's
/// busiest round trip under load.
#[derive(Default)]
struct Changes {
    orders: Vec<OrderChange>,
    index: std::collections::HashMap<Uuid, usize>,
}

struct OrderChange {
    order_id: Uuid,
    /// Set when the batch holds the order's OrderPlaced.
    placed: Option<Placed>,
    status: OrderStatus,
    reason: Option<String>,
    version: i32,
    at: DateTime<Utc>,
}

struct Placed {
    customer_id: String,
    total_minor: i64,
    currency: String,
    item_count: i32,
    placed_at: DateTime<Utc>,
}

impl Changes {
    /// Events arrive in commit order, so per order in version order; an older or repeated
    /// event changes nothing.
    fn fold(&mut self, order_id: Uuid, version: i32, at: DateTime<Utc>, event: &OrderEvent) {
        let (status, reason, placed) = match event {
            OrderEvent::OrderPlaced {
                customer_id,
                lines,
                total,
                ..
            } => {
                let placed = Placed {
                    customer_id: customer_id.to_string(),
                    total_minor: total.amount_minor,
                    currency: total.currency.to_string(),
                    item_count: i32::try_from(lines.len()).unwrap_or(i32::MAX),
                    placed_at: at,
                };
                (OrderStatus::Pending, None, Some(placed))
            }
            OrderEvent::OrderApproved {} => (OrderStatus::Approved, None, None),
            OrderEvent::OrderRejected { reason } => {
                (OrderStatus::Rejected, Some(reason.clone()), None)
            }
        };
        match self.index.get(&order_id) {
            Some(&i) if self.orders[i].version < version => {
                let change = &mut self.orders[i];
                (change.status, change.reason, change.version, change.at) =
                    (status, reason, version, at);
            }
            Some(_) => {}
            None => {
                self.index.insert(order_id, self.orders.len());
                self.orders.push(OrderChange {
                    order_id,
                    placed,
                    status,
                    reason,
                    version,
                    at,
                });
            }
        }
    }

    /// Idempotent: a summary only moves forward in version (a replay, or a batch applied
    /// again after a rebuild, changes nothing).
    async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let (placed, changed): (Vec<&OrderChange>, Vec<&OrderChange>) =
            self.orders.iter().partition(|c| c.placed.is_some());
        if !placed.is_empty() {
            fn p(c: &OrderChange) -> &Placed {
                c.placed.as_ref().expect("partitioned on placed")
            }
            sqlx::query(
                "INSERT INTO order_summaries (order_id, customer_id, status, rejection_reason, \
                 total_minor, currency, item_count, version, placed_at, updated_at) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                     $5::int8[], $6::text[], $7::int4[], $8::int4[], $9::timestamptz[], \
                     $10::timestamptz[]) \
                 ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, \
                     rejection_reason = EXCLUDED.rejection_reason, version = EXCLUDED.version, \
                     updated_at = EXCLUDED.updated_at \
                 WHERE order_summaries.version < EXCLUDED.version",
            )
            .bind(column(&placed, |c| c.order_id))
            .bind(column(&placed, |c| p(c).customer_id.clone()))
            .bind(column(&placed, |c| c.status.as_str()))
            .bind(column(&placed, |c| c.reason.clone()))
            .bind(column(&placed, |c| p(c).total_minor))
            .bind(column(&placed, |c| p(c).currency.clone()))
            .bind(column(&placed, |c| p(c).item_count))
            .bind(column(&placed, |c| c.version))
            .bind(column(&placed, |c| p(c).placed_at))
            .bind(column(&placed, |c| c.at))
            .execute(&mut *conn)
            .await?;
        }
        if !changed.is_empty() {
            sqlx::query(
                "UPDATE order_summaries s SET status = c.status, rejection_reason = c.reason, \
                     version = c.version, updated_at = c.at \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[]) \
                     AS c(order_id, status, reason, version, at) \
                 WHERE s.order_id = c.order_id AND s.version < c.version",
            )
            .bind(column(&changed, |c| c.order_id))
            .bind(column(&changed, |c| c.status.as_str()))
            .bind(column(&changed, |c| c.reason.clone()))
            .bind(column(&changed, |c| c.version))
            .bind(column(&changed, |c| c.at))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// One bind array of an `unnest` statement.
fn column<'a, T>(rows: &[&'a OrderChange], f: impl Fn(&'a OrderChange) -> T) -> Vec<T> {
    rows.iter().map(|c| f(c)).collect()
}

/// Project until caught up, one transaction per batch. Returns the events applied.
///
/// A batch shorter than [`BATCH`] means caught up as of that transaction's snapshot: no
/// second transaction just to find nothing (at full load that empty pass was one of the
/// order database's ~3.5 transactions per saga). Events committed since are announced by
/// their own NOTIFY, which wakes the projector again.
pub async fn catch_up(pool: &PgPool) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let n = project_batch(&mut tx).await?;
        tx.commit().await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}

/// Replay: rebuild the read model from the whole event log in one transaction, so
/// readers keep seeing the old model until the new one is complete. Returns the number
/// of events replayed.
pub async fn rebuild(pool: &PgPool) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(PROJECTION)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM order_summaries")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET last_tx_id = '0'::xid8, last_seq = 0, \
         updated_at = now() WHERE name = $1",
    )
    .bind(PROJECTION)
    .execute(&mut *tx)
    .await?;
    let mut total = 0;
    loop {
        let n = project_batch(&mut tx).await?;
        if n == 0 {
            break;
        }
        total += n;
    }
    tx.commit().await?;
    Ok(total)
}

/// Has the projection applied the event with this global sequence? `None` when no such
/// event exists (a token this service never issued).
pub async fn has_reached(conn: &mut PgConnection, token: i64) -> Result<Option<bool>, StoreError> {
    let row = sqlx::query(
        "SELECT (e.tx_id, e.global_seq) <= (c.last_tx_id, c.last_seq) AS reached \
         FROM order_events e, projection_checkpoints c \
         WHERE c.name = $1 AND e.global_seq = $2",
    )
    .bind(PROJECTION)
    .bind(token)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get("reached")).transpose()?)
}

/// A page of a customer's orders, newest first; `after` is the last order id of the
/// previous page. Returns the page and whether there are more.
pub async fn list_by_customer(
    conn: &mut PgConnection,
    customer_id: &CustomerId,
    after: Option<OrderId>,
    limit: i64,
) -> Result<(Vec<OrderSummary>, bool), StoreError> {
    let rows = sqlx::query(
        "SELECT order_id, customer_id, status, rejection_reason, total_minor, currency, \
         item_count, version, placed_at, updated_at FROM order_summaries \
         WHERE customer_id = $1 AND ($2::uuid IS NULL OR order_id < $2) \
         ORDER BY order_id DESC LIMIT $3",
    )
    .bind(customer_id.to_string())
    .bind(after.map(Uuid::from))
    .bind(limit + 1)
    .fetch_all(conn)
    .await?;
    page_of(&rows, limit)
}

/// A page of the orders in `status` placed longer than `older_than` ago (optionally of one
/// customer), oldest first (order ids are UUID v7); `after` is the last order id of the
/// previous page.
pub async fn list_by_status(
    conn: &mut PgConnection,
    status: OrderStatus,
    older_than: Option<Duration>,
    customer_id: Option<&CustomerId>,
    after: Option<OrderId>,
    limit: i64,
) -> Result<(Vec<OrderSummary>, bool), StoreError> {
    let rows = sqlx::query(
        "SELECT order_id, customer_id, status, rejection_reason, total_minor, currency, \
         item_count, version, placed_at, updated_at FROM order_summaries \
         WHERE status = $1 AND placed_at <= now() - make_interval(secs => $2) \
         AND ($3::text IS NULL OR customer_id = $3) AND ($4::uuid IS NULL OR order_id > $4) \
         ORDER BY order_id LIMIT $5",
    )
    .bind(status.as_str())
    .bind(older_than.unwrap_or_default().as_secs_f64())
    .bind(customer_id.map(ToString::to_string))
    .bind(after.map(Uuid::from))
    .bind(limit + 1)
    .fetch_all(conn)
    .await?;
    page_of(&rows, limit)
}

/// Orders still PENDING although placed longer than `after` ago: their saga never started
/// or never ended (e.g. an OrderPlaced the orchestrator dead-lettered).
pub async fn count_pending_older_than(pool: &PgPool, after: Duration) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM order_summaries \
         WHERE status = $1 AND placed_at <= now() - make_interval(secs => $2)",
    )
    .bind(OrderStatus::Pending.as_str())
    .bind(after.as_secs_f64())
    .fetch_one(pool)
    .await?)
}

fn page_of(rows: &[PgRow], limit: i64) -> Result<(Vec<OrderSummary>, bool), StoreError> {
    let more = rows.len() as i64 > limit;
    let page = rows
        .iter()
        .take(limit as usize)
        .map(|row| {
            let order_id: Uuid = row.try_get("order_id")?;
            let customer: String = row.try_get("customer_id")?;
            let currency: String = row.try_get("currency")?;
            Ok(OrderSummary {
                order_id: OrderId::from(order_id),
                customer_id: customer
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("customer id: {e}")))?,
                status: row.try_get("status")?,
                rejection_reason: row.try_get("rejection_reason")?,
                total: Money {
                    amount_minor: row.try_get("total_minor")?,
                    currency: currency
                        .parse::<Currency>()
                        .map_err(|e| StoreError::Corrupt(format!("currency: {e}")))?,
                },
                item_count: row.try_get("item_count")?,
                version: row.try_get("version")?,
                placed_at: row.try_get("placed_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((page, more))
}

/// Keeps the read model up to date: woken by NOTIFY from the event table's trigger (any
/// instance's writes), by a local nudge after a write, and by a poll as a safety net.
#[derive(Clone)]
pub struct Projector {
    pool: PgPool,
    nudge: Arc<Notify>,
    progress: watch::Sender<u64>,
    poll: Duration,
    linger: Duration,
}

impl Projector {
    pub fn new(pool: PgPool, poll: Duration) -> Projector {
        Projector {
            pool,
            nudge: Arc::new(Notify::new()),
            progress: watch::channel(0).0,
            poll,
            linger: Duration::from_millis(DEFAULT_LINGER_MS),
        }
    }

    /// At most one pass per `linger` (`order.projector_linger_ms`): a wake-up within
    /// `linger` of the previous pass waits out the rest, so under load one pass applies the
    /// events of many placements (at full load the projector otherwise made a pass, five to
    /// seven statements, per order, many of them finding nothing yet below the xmin horizon).
    /// A wake-up after a quiet spell runs at once, so an idle service's read-your-writes wait
    /// is not lengthened.
    pub fn with_linger(mut self, linger: Duration) -> Projector {
        self.linger = linger;
        self
    }

    /// Ask the projector to run now (called after this instance appended events).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Changes every time a projection pass finished; waiters re-check their token.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown`; a failed pass is retried on the next wake-up (the error is
    /// logged), so the part only ends with the token.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), std::convert::Infallible> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen("order_events").await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "projector LISTEN failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "projector listener connect failed; polling only");
                None
            }
        };
        let mut last_pass: Option<tokio::time::Instant> = None;
        loop {
            if let Some(at) = last_pass {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(at + self.linger) => {}
                }
            }
            // Wake-ups that arrived since the last pass (a local nudge and the NOTIFY of the
            // same write, or many writes under load) are all covered by the next pass.
            let _ = self.nudge.notified().now_or_never();
            if let Some(l) = listener.as_mut() {
                while l.next_buffered().is_some() {}
            }
            let result = catch_up(&self.pool).await;
            last_pass = Some(tokio::time::Instant::now());
            match result {
                Ok(n) if n > 0 => tracing::debug!(events = n, "projected"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "projection pass failed; will retry"),
            }
            self.progress.send_modify(|n| *n = n.wrapping_add(1));
            let notified = async {
                match listener.as_mut() {
                    Some(l) => {
                        if let Err(e) = l.recv().await {
                            tracing::warn!(error = %e, "projector listener error");
                            tokio::time::sleep(self.poll).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = notified => {}
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
