//! Shipments: the shipping service's state and the only code that changes it.
//!
//! Scheduling books a shipment (reversible: CancelShipment); dispatch is the irreversible act
//! and happens only on OrderApproved, so the saga never has to undo it. Every command is
//! idempotent by order id: the first ScheduleShipment or CancelShipment for an order inserts
//! its `shipments` row, and every later command for that order is answered from that row.

use std::collections::BTreeSet;

use saga_contracts::ids::{OrderId, ShipmentId};
use saga_contracts::{Address, StockLine};
use saga_ledger::{Ledger, ledger_status};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

ledger_status! {
    /// Where an order's shipment stands (`shipments.status`).
    pub enum ShipmentStatus {
        /// Claimed by a ScheduleShipment still deciding (inside its transaction).
        Pending = "pending",
        Scheduled = "scheduled",
        /// Refused (destination not served); the reason is recorded.
        Refused = "refused",
        /// Scheduled, then cancelled.
        Cancelled = "cancelled",
        /// Left the warehouse (after approval); cannot be called back.
        Dispatched = "dispatched",
        /// A CancelShipment came before any ScheduleShipment.
        Tombstone = "tombstone",
    }
    pending = Pending, tombstone = Tombstone
}

/// One row per order: the outcome of its first command.
const SHIPMENTS: Ledger<ShipmentStatus> = Ledger::new("shipments");

/// Refusal reason for a ScheduleShipment that arrives after a CancelShipment for its order.
pub const CANCELLED_BEFORE_SCHEDULED: &str =
    "the order's shipment was cancelled before it was scheduled";

#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    #[error("shipment of order {0} is in an unexpected state {1:?}")]
    CorruptState(OrderId, ShipmentStatus),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The destination countries served (ISO 3166-1 alpha-2, compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCountries(BTreeSet<String>);

impl ServedCountries {
    /// Fails with the offending entry unless every entry is two ASCII letters.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(codes: I) -> Result<Self, String> {
        codes
            .into_iter()
            .map(|c| {
                let c = c.as_ref();
                if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                    Ok(c.to_ascii_uppercase())
                } else {
                    Err(c.to_owned())
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn serves(&self, country: &str) -> bool {
        self.0.contains(&country.trim().to_ascii_uppercase())
    }
}

/// The answer to a ScheduleShipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOutcome {
    Scheduled(ShipmentId),
    Refused(String),
}

/// The answer to a CancelShipment: whether a booked shipment was (or had already been)
/// cancelled. `false` when nothing was booked, or when it had already left (see [`cancel`]).
pub type Cancelled = bool;

/// A shipment as `GET /shipments/{order_id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shipment {
    pub order_id: OrderId,
    pub shipment_id: Option<ShipmentId>,
    pub status: ShipmentStatus,
    pub country: Option<String>,
    pub refusal_reason: Option<String>,
    pub dispatched_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Books a shipment of `lines` to `address`, or refuses it.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn schedule(
    conn: &mut PgConnection,
    order_id: OrderId,
    address: &Address,
    lines: &[StockLine],
    served: &ServedCountries,
) -> Result<ScheduleOutcome, ShippingError> {
    // Claim the order first: a concurrent command for the same order blocks here until this
    // transaction ends, then sees the outcome instead of booking a second time.
    if !SHIPMENTS.claim(conn, order_id).await? {
        return previous_schedule_outcome(conn, order_id).await;
    }

    let country = address.country.trim().to_ascii_uppercase();
    let outcome = if served.serves(&country) {
        ScheduleOutcome::Scheduled(ShipmentId::new())
    } else {
        ScheduleOutcome::Refused(format!("destination country {country:?} is not served"))
    };
    let (status, shipment_id, reason) = match &outcome {
        ScheduleOutcome::Scheduled(id) => (ShipmentStatus::Scheduled, Some(*id.as_uuid()), None),
        ScheduleOutcome::Refused(reason) => (ShipmentStatus::Refused, None, Some(reason.as_str())),
    };
    sqlx::query(
        "UPDATE shipments SET status = $2, shipment_id = $3, refusal_reason = $4, country = $5,
                address = $6, lines = $7, updated_at = now()
         WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(status)
    .bind(shipment_id)
    .bind(reason)
    .bind(&country)
    .bind(Json(address))
    .bind(Json(lines))
    .execute(&mut *conn)
    .await?;
    tracing::info!(?outcome, %country, "shipment {status}");
    Ok(outcome)
}

/// Cancels the order's booked shipment, once.
///
/// A shipment already dispatched cannot be called back: that answers `false` and is logged
/// as an error, because the saga dispatches only after approval and then never compensates.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn cancel(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Cancelled, ShippingError> {
    // Nothing known about the order: leave a tombstone so a late ScheduleShipment is refused.
    if SHIPMENTS.tombstone_unless_known(conn, order_id).await? {
        tracing::info!("cancel before any schedule: tombstone recorded");
        return Ok(false);
    }

    let status = SHIPMENTS
        .status_for_update(conn, order_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    match status {
        ShipmentStatus::Scheduled => {}
        // Already cancelled: same answer, nothing changes.
        ShipmentStatus::Cancelled => return Ok(true),
        ShipmentStatus::Refused | ShipmentStatus::Tombstone => return Ok(false),
        ShipmentStatus::Dispatched => {
            tracing::error!("CancelShipment for a dispatched shipment; it cannot be called back");
            return Ok(false);
        }
        ShipmentStatus::Pending => return Err(ShippingError::CorruptState(order_id, status)),
    }
    SHIPMENTS
        .set_status(conn, order_id, ShipmentStatus::Cancelled)
        .await?;
    tracing::info!("shipment cancelled");
    Ok(true)
}

/// Dispatches the order's scheduled shipment (on OrderApproved). Returns the shipment id when
/// this call dispatched it, `None` when there was nothing to dispatch or it already left.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn dispatch(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<ShipmentId>, ShippingError> {
    let row: Option<(ShipmentStatus, Option<Uuid>)> =
        sqlx::query_as("SELECT status, shipment_id FROM shipments WHERE order_id = $1 FOR UPDATE")
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let shipment_id = match row {
        Some((ShipmentStatus::Scheduled, Some(id))) => ShipmentId::from_uuid(id),
        Some((status, _)) => {
            tracing::info!(%status, "order approved; no scheduled shipment to dispatch");
            return Ok(None);
        }
        None => {
            tracing::warn!("order approved but no shipment was ever scheduled for it");
            return Ok(None);
        }
    };
    sqlx::query(
        "UPDATE shipments SET status = $2, dispatched_at = now(), updated_at = now()
         WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(ShipmentStatus::Dispatched)
    .execute(&mut *conn)
    .await?;
    tracing::info!(%shipment_id, "shipment dispatched");
    Ok(Some(shipment_id))
}

pub async fn shipment(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<Shipment>, ShippingError> {
    type Row = (
        ShipmentStatus,
        Option<Uuid>,
        Option<String>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT status, shipment_id, country, refusal_reason, dispatched_at
         FROM shipments WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(status, shipment_id, country, refusal_reason, dispatched_at)| Shipment {
            order_id,
            shipment_id: shipment_id.map(ShipmentId::from_uuid),
            status,
            country,
            refusal_reason,
            dispatched_at,
        },
    ))
}

async fn previous_schedule_outcome(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<ScheduleOutcome, ShippingError> {
    type Row = (ShipmentStatus, Option<Uuid>, Option<String>);
    let (status, shipment_id, reason): Row = sqlx::query_as(
        "SELECT status, shipment_id, refusal_reason FROM shipments WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    tracing::info!(%status, "duplicate ScheduleShipment answered from the recorded outcome");
    match (status, shipment_id, reason) {
        // A shipment cancelled or dispatched since still answers as scheduled: the reply a
        // duplicate command gets must not depend on what happened in between.
        (
            ShipmentStatus::Scheduled | ShipmentStatus::Cancelled | ShipmentStatus::Dispatched,
            Some(id),
            _,
        ) => Ok(ScheduleOutcome::Scheduled(ShipmentId::from_uuid(id))),
        (ShipmentStatus::Refused, _, Some(reason)) => Ok(ScheduleOutcome::Refused(reason)),
        (ShipmentStatus::Tombstone, _, _) => Ok(ScheduleOutcome::Refused(
            CANCELLED_BEFORE_SCHEDULED.to_owned(),
        )),
        _ => Err(ShippingError::CorruptState(order_id, status)),
    }
}
