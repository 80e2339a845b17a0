//! Snapshots of the order fold (`order_snapshots`): every `order.snapshot_every` events the
//! folded [`Order`] is stored, and a fold starts from the latest snapshot instead of the
//! first event. Orders have two or three events, so today no order reaches a snapshot; the
//! mechanism is here, measured (`cargo xtask bench fold`, docs/benchmarks.md), for streams
//! that grow (docs/order-service.md, "Snapshots").
//!
//! Rules that keep a snapshot fold equal to the full fold:
//! - a snapshot records [`SNAPSHOT_FOLD_VERSION`]; one written by another fold logic is
//!   ignored, and replaced the next time that version is folded (rebuilt, never trusted);
//! - a snapshot is only written from a fold of the whole stream (never from an `as_of` fold,
//!   which may leave out events), at a version that is a multiple of `snapshot_every`;
//! - an `as_of` fold uses a snapshot only when every event it covers was recorded at or
//!   before `as_of` (`covers_until`), then folds the later events recorded by then: exactly
//!   the events the full `as_of` fold would see.

use chrono::{DateTime, Utc};
use saga_contracts::ids::OrderId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::domain::{DomainError, Order};
use crate::store::{self, StoreError};

/// The version of [`Order::apply`]'s logic that snapshots are written with. Bump it whenever
/// the fold changes what it computes from the same events (a new field, a different
/// status rule, an upcaster that changes meaning): older snapshots are then ignored and
/// rebuilt from the events. Adding an event type that old streams never contain does not
/// need a bump.
pub const SNAPSHOT_FOLD_VERSION: i32 = 1;

/// `order.snapshot_every` unless configured (how it was chosen: docs/order-service.md).
pub const DEFAULT_SNAPSHOT_EVERY: u32 = 100;

/// Is a snapshot stored at `version` when one is stored every `every` events?
pub fn due_at(version: i32, every: u32) -> bool {
    every > 0 && i64::from(version) % i64::from(every) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// The result of a fold and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// `None`: no event (at or before `as_of`).
    pub order: Option<Order>,
    /// `global_seq` of the last event folded (the order's consistency token).
    pub last_seq: Option<i64>,
    /// The version of the snapshot the fold started from.
    pub from_snapshot: Option<i32>,
    /// Events read and applied after the snapshot (all of them without one).
    pub events_folded: usize,
}

/// A usable snapshot: the state after event `version`.
struct Snapshot {
    order: Order,
    last_seq: i64,
    covers_until: DateTime<Utc>,
}

/// The order, folded from its latest usable snapshot (`every == 0`: from its first event,
/// no snapshot read or written). A whole-stream fold that passes a multiple of `every`
/// stores the state there, so snapshots appear as streams grow and after a bump of
/// [`SNAPSHOT_FOLD_VERSION`].
pub async fn fold(
    conn: &mut PgConnection,
    order_id: OrderId,
    as_of: Option<DateTime<Utc>>,
    every: u32,
) -> Result<Folded, FoldError> {
    let snapshot = if every > 0 {
        latest(conn, order_id, as_of).await?
    } else {
        None
    };
    let from_snapshot = snapshot.as_ref().map(|s| s.order.version);
    let events =
        store::load_events_after(conn, order_id, from_snapshot.unwrap_or(0), as_of).await?;
    let (mut order, mut last_seq, mut covers_until) = match snapshot {
        Some(s) => (Some(s.order), Some(s.last_seq), Some(s.covers_until)),
        None => (None, None, None),
    };
    // The state at the last multiple of `every` passed, with the latest time among the
    // events up to it (the running maximum at that point).
    let mut due: Option<(Order, i64, DateTime<Utc>)> = None;
    for recorded in &events {
        let next = Order::apply(order.take(), recorded)?;
        last_seq = Some(recorded.global_seq);
        let until = covers_until.map_or(recorded.recorded_at, |t| t.max(recorded.recorded_at));
        covers_until = Some(until);
        if as_of.is_none() && due_at(recorded.version, every) {
            due = Some((next.clone(), recorded.global_seq, until));
        }
        order = Some(next);
    }
    if let Some((state, seq, until)) = due {
        save(conn, &state, seq, until).await?;
    }
    Ok(Folded {
        order,
        last_seq,
        from_snapshot,
        events_folded: events.len(),
    })
}

/// The latest snapshot of this fold version usable for `as_of` (any, without `as_of`).
/// A state that no longer decodes is treated like one of an older fold version: ignored.
async fn latest(
    conn: &mut PgConnection,
    order_id: OrderId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<Snapshot>, StoreError> {
    let row = sqlx::query(
        "SELECT version, state, last_seq, covers_until FROM order_snapshots \
         WHERE order_id = $1 AND fold_version = $2 \
           AND ($3::timestamptz IS NULL OR covers_until <= $3) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(Uuid::from(order_id))
    .bind(SNAPSHOT_FOLD_VERSION)
    .bind(as_of)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let version: i32 = row.try_get("version")?;
    let order: Order = match serde_json::from_value(row.try_get("state")?) {
        Ok(order) => order,
        Err(error) => {
            tracing::warn!(%order_id, version, %error, "order snapshot does not decode; folding from the events");
            return Ok(None);
        }
    };
    if order.version != version || order.id != order_id {
        tracing::warn!(%order_id, version, "order snapshot state disagrees with its row; ignored");
        return Ok(None);
    }
    Ok(Some(Snapshot {
        order,
        last_seq: row.try_get("last_seq")?,
        covers_until: row.try_get("covers_until")?,
    }))
}

/// Stores `order` as the snapshot at its version. A row of an older fold version at that
/// version is replaced; one of this or a newer fold version (a newer build during a rolling
/// deploy) is left alone.
pub async fn save(
    conn: &mut PgConnection,
    order: &Order,
    last_seq: i64,
    covers_until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let state = serde_json::to_value(order).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO order_snapshots (order_id, version, fold_version, state, last_seq, covers_until) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (order_id, version) DO UPDATE SET fold_version = EXCLUDED.fold_version, \
           state = EXCLUDED.state, last_seq = EXCLUDED.last_seq, \
           covers_until = EXCLUDED.covers_until, written_at = now() \
         WHERE order_snapshots.fold_version < EXCLUDED.fold_version",
    )
    .bind(Uuid::from(order.id))
    .bind(order.version)
    .bind(SNAPSHOT_FOLD_VERSION)
    .bind(state)
    .bind(last_seq)
    .bind(covers_until)
    .execute(conn)
    .await?;
    Ok(())
}
