//! Stock levels and reservations: the inventory's state and the only code that changes it.
//!
//! Every command is idempotent by order id: the first ReserveStock or ReleaseStock for an
//! order inserts its `reservations` row, and every later command for that order is answered
//! from that row. Stock rows are locked in SKU order so concurrent reservations over the same
//! SKUs queue up instead of deadlocking; the CHECK constraints are the last guard.

use std::collections::BTreeMap;

use saga_contracts::StockLine;
use saga_contracts::ids::{OrderId, ReservationId, Sku};
use saga_contracts::messages::inventory::Shortage;
use saga_ledger::{Ledger, ledger_status};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

ledger_status! {
    /// Where an order's reservation stands (`reservations.status`).
    pub enum ReservationStatus {
        /// Claimed by a ReserveStock still deciding (inside its transaction).
        Pending = "pending",
        Reserved = "reserved",
        /// Refused for lack of stock; the shortages are recorded.
        Unavailable = "unavailable",
        /// Reserved, then given back.
        Released = "released",
        /// A ReleaseStock came before any ReserveStock.
        Tombstone = "tombstone",
    }
    pending = Pending, tombstone = Tombstone
}

/// One row per order: the outcome of its first command.
const RESERVATIONS: Ledger<ReservationStatus> = Ledger::new("reservations");

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("quantity for SKU {sku} must be between 1 and {max}, got {quantity}", max = i32::MAX)]
    InvalidQuantity { sku: Sku, quantity: i64 },
    #[error("reservation of order {0} is in an unexpected state {1:?}")]
    CorruptState(OrderId, ReservationStatus),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What the inventory holds of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StockLevel {
    pub sku: Sku,
    pub available: i32,
    pub reserved: i32,
}

/// The answer to a ReserveStock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(ReservationId),
    /// Nothing was reserved; the shortages name every line that could not be served.
    Unavailable(Vec<Shortage>),
    /// A ReleaseStock for this order came first; a late reservation must not hold stock that
    /// nobody will ever release.
    AlreadyReleased,
}

/// The answer to a ReleaseStock: whether this order's stock was (or had already been) given
/// back. `false` when nothing was ever reserved.
pub type Released = bool;

/// Sets the available quantity of `sku` (admin). Reserved stock is left alone.
pub async fn set_stock(
    conn: &mut PgConnection,
    sku: &Sku,
    available: i32,
) -> Result<StockLevel, InventoryError> {
    let (available, reserved): (i32, i32) = sqlx::query_as(
        "INSERT INTO stock (sku, available) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, updated_at = now()
         RETURNING available, reserved",
    )
    .bind(sku.as_str())
    .bind(available)
    .fetch_one(&mut *conn)
    .await?;
    Ok(StockLevel {
        sku: sku.clone(),
        available,
        reserved,
    })
}

/// What an adjustment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjusted {
    Applied(StockLevel),
    /// The delta would take `available` below zero (stock already reserved cannot be taken
    /// back); nothing changed.
    WouldGoNegative(StockLevel),
    /// The delta would take `available` above `i32::MAX`; nothing changed.
    WouldOverflow(StockLevel),
}

/// Adds `delta` (negative: removes) to the available quantity of `sku` (admin), creating the
/// SKU on a positive delta. A delta, not an absolute value: a reservation committed between
/// an operator's read and write still counts, where `PUT` of a total would overwrite it.
pub async fn adjust_stock(
    conn: &mut PgConnection,
    sku: &Sku,
    delta: i32,
) -> Result<Adjusted, InventoryError> {
    // One statement: the row lock serialises it with reservations on the same SKU.
    let applied: Option<(i32, i32)> = sqlx::query_as(
        "INSERT INTO stock (sku, available) SELECT $1, $2 WHERE $2 >= 0
         ON CONFLICT (sku) DO UPDATE SET available = stock.available + $2, updated_at = now()
             WHERE stock.available::int8 + $2 BETWEEN 0 AND 2147483647
         RETURNING available, reserved",
    )
    .bind(sku.as_str())
    .bind(delta)
    .fetch_optional(&mut *conn)
    .await?;
    match applied {
        Some((available, reserved)) => Ok(Adjusted::Applied(StockLevel {
            sku: sku.clone(),
            available,
            reserved,
        })),
        None => {
            let level = stock_level(conn, sku).await?.unwrap_or(StockLevel {
                sku: sku.clone(),
                available: 0,
                reserved: 0,
            });
            Ok(if delta < 0 {
                Adjusted::WouldGoNegative(level)
            } else {
                Adjusted::WouldOverflow(level)
            })
        }
    }
}

pub async fn stock_level(
    conn: &mut PgConnection,
    sku: &Sku,
) -> Result<Option<StockLevel>, InventoryError> {
    let row: Option<(i32, i32)> =
        sqlx::query_as("SELECT available, reserved FROM stock WHERE sku = $1")
            .bind(sku.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(available, reserved)| StockLevel {
        sku: sku.clone(),
        available,
        reserved,
    }))
}

/// Locks, in `sku` order, every stock row a batch of commands will change: the SKUs it
/// reserves and those reserved by the orders it releases. Batches of several partitions run
/// concurrently on the same hot SKUs; taken message by message, their locks interleave in
/// different orders and deadlock. Taken here first, in one order, they only queue.
pub async fn lock_for_batch(
    conn: &mut PgConnection,
    reserving: &[&str],
    releasing: &[Uuid],
) -> Result<(), InventoryError> {
    sqlx::query(
        "SELECT 1 FROM stock
         WHERE sku = ANY($1)
            OR sku IN (SELECT sku FROM reservation_lines WHERE order_id = ANY($2))
         ORDER BY sku FOR UPDATE",
    )
    .bind(reserving)
    .bind(releasing)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Reserves every line of the order or none of them.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn reserve(
    conn: &mut PgConnection,
    order_id: OrderId,
    lines: &[StockLine],
) -> Result<ReserveOutcome, InventoryError> {
    let wanted = merge_lines(lines)?;

    // Claim the order first: a concurrent command for the same order blocks here until this
    // transaction ends, then sees the outcome instead of reserving a second time.
    if !RESERVATIONS.claim(conn, order_id).await? {
        return previous_reserve_outcome(conn, order_id).await;
    }

    let skus: Vec<String> = wanted.keys().map(|s| s.as_str().to_owned()).collect();
    let held: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut *conn)
    .await?;
    let held: BTreeMap<String, i32> = held.into_iter().collect();

    let shortages: Vec<Shortage> = wanted
        .iter()
        .filter_map(|(sku, &requested)| {
            let available = held.get(sku.as_str()).copied().unwrap_or(0);
            (available < requested).then(|| Shortage {
                sku: sku.clone(),
                requested,
                available,
            })
        })
        .collect();

    if !shortages.is_empty() {
        sqlx::query(
            "UPDATE reservations SET status = $3, shortages = $2, updated_at = now()
             WHERE order_id = $1",
        )
        .bind(order_id.as_uuid())
        .bind(Json(&shortages))
        .bind(ReservationStatus::Unavailable)
        .execute(&mut *conn)
        .await?;
        tracing::info!(short = shortages.len(), "stock unavailable");
        return Ok(ReserveOutcome::Unavailable(shortages));
    }

    let quantities: Vec<i32> = wanted.values().copied().collect();
    sqlx::query(
        "UPDATE stock s SET available = s.available - l.qty, reserved = s.reserved + l.qty,
                updated_at = now()
         FROM unnest($1::text[], $2::int4[]) AS l(sku, qty) WHERE s.sku = l.sku",
    )
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO reservation_lines (order_id, sku, quantity)
         SELECT $1, l.sku, l.qty FROM unnest($2::text[], $3::int4[]) AS l(sku, qty)",
    )
    .bind(order_id.as_uuid())
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *conn)
    .await?;
    let reservation_id = ReservationId::new();
    sqlx::query(
        "UPDATE reservations SET status = $3, reservation_id = $2, updated_at = now()
         WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(reservation_id.as_uuid())
    .bind(ReservationStatus::Reserved)
    .execute(&mut *conn)
    .await?;
    tracing::info!(%reservation_id, lines = skus.len(), "stock reserved");
    Ok(ReserveOutcome::Reserved(reservation_id))
}

/// Gives back the order's reserved stock, once.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn release(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Released, InventoryError> {
    // Nothing known about the order: leave a tombstone so a late ReserveStock is refused.
    if RESERVATIONS.tombstone_unless_known(conn, order_id).await? {
        tracing::info!("release before any reservation: tombstone recorded");
        return Ok(false);
    }

    let status = RESERVATIONS
        .status_for_update(conn, order_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    match status {
        ReservationStatus::Reserved => {}
        // Already given back: same answer, nothing changes.
        ReservationStatus::Released => return Ok(true),
        ReservationStatus::Unavailable | ReservationStatus::Tombstone => return Ok(false),
        ReservationStatus::Pending => return Err(InventoryError::CorruptState(order_id, status)),
    }

    // Same lock order as `reserve`, so a release never deadlocks against a reservation.
    sqlx::query(
        "SELECT 1 FROM stock WHERE sku IN (SELECT sku FROM reservation_lines WHERE order_id = $1)
         ORDER BY sku FOR UPDATE",
    )
    .bind(order_id.as_uuid())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE stock s SET available = s.available + l.quantity,
                reserved = s.reserved - l.quantity, updated_at = now()
         FROM reservation_lines l WHERE l.order_id = $1 AND s.sku = l.sku",
    )
    .bind(order_id.as_uuid())
    .execute(&mut *conn)
    .await?;
    RESERVATIONS
        .set_status(conn, order_id, ReservationStatus::Released)
        .await?;
    tracing::info!("stock released");
    Ok(true)
}

async fn previous_reserve_outcome(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<ReserveOutcome, InventoryError> {
    type Row = (ReservationStatus, Option<Uuid>, Option<Json<Vec<Shortage>>>);
    let (status, reservation_id, shortages): Row = sqlx::query_as(
        "SELECT status, reservation_id, shortages FROM reservations WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    tracing::info!(%status, "duplicate ReserveStock answered from the recorded outcome");
    match (status, reservation_id, shortages) {
        // A reservation released since still answers as reserved: the reply a duplicate
        // command gets must not depend on what happened in between.
        (ReservationStatus::Reserved | ReservationStatus::Released, Some(id), _) => {
            Ok(ReserveOutcome::Reserved(id.into()))
        }
        (ReservationStatus::Unavailable, _, Some(Json(shortages))) => {
            Ok(ReserveOutcome::Unavailable(shortages))
        }
        (ReservationStatus::Tombstone, _, _) => Ok(ReserveOutcome::AlreadyReleased),
        _ => Err(InventoryError::CorruptState(order_id, status)),
    }
}

/// Sums lines of the same SKU (a command may repeat one) and checks every quantity.
fn merge_lines(lines: &[StockLine]) -> Result<BTreeMap<Sku, i32>, InventoryError> {
    let mut merged: BTreeMap<Sku, i64> = BTreeMap::new();
    for line in lines {
        if line.quantity <= 0 {
            return Err(InventoryError::InvalidQuantity {
                sku: line.sku.clone(),
                quantity: line.quantity.into(),
            });
        }
        *merged.entry(line.sku.clone()).or_default() += i64::from(line.quantity);
    }
    merged
        .into_iter()
        .map(|(sku, quantity)| match i32::try_from(quantity) {
            Ok(q) => Ok((sku, q)),
            Err(_) => Err(InventoryError::InvalidQuantity { sku, quantity }),
        })
        .collect()
}
