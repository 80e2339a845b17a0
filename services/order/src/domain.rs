//! The order aggregate, event-sourced: its state is a left fold of its events
//! (`Order::apply`), and commands decide which new event (if any) to append.

use chrono::{DateTime, Utc};
use saga_contracts::ids::{CustomerId, OrderId};
use saga_contracts::{Address, Money, OrderLine};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened to an order, as stored in `order_events.payload` (with `type` and
/// `schema_version` next to it; older versions are raised to this shape by `upcast`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: CustomerId,
        lines: Vec<OrderLine>,
        total: Money,
        shipping_address: Address,
    },
    OrderApproved {},
    /// Stored as v2 (`rejection_reason`); v1 rows (`reason`) are raised by `upcast`.
    OrderRejected {
        #[serde(rename = "rejection_reason")]
        reason: String,
    },
}

impl OrderEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderApproved {} => "OrderApproved",
            OrderEvent::OrderRejected { .. } => "OrderRejected",
        }
    }
}

/// An event as read back from the store.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub order_id: OrderId,
    pub version: i32,
    pub global_seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: OrderEvent,
}

/// Where an order stands: the one typed status used by the aggregate, the read model, the
/// HTTP views and the live stream (`PENDING`, `APPROVED`, `REJECTED` on the wire and in
/// `order_summaries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Approved,
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Approved => "APPROVED",
            OrderStatus::Rejected => "REJECTED",
        }
    }

    /// Approved and rejected are final: no event follows them.
    pub fn is_final(self) -> bool {
        !matches!(self, OrderStatus::Pending)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown order status {0:?}: expected PENDING, APPROVED or REJECTED")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PENDING" => Ok(OrderStatus::Pending),
            "APPROVED" => Ok(OrderStatus::Approved),
            "REJECTED" => Ok(OrderStatus::Rejected),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// Stored as its wire form in `order_summaries.status`; a text that is not a status fails to
/// decode.
impl sqlx::Type<sqlx::Postgres> for OrderStatus {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for OrderStatus {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for OrderStatus {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?.parse()?)
    }
}

/// Lets tests and clients compare with the wire form (`view.status == "APPROVED"`).
impl PartialEq<&str> for OrderStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Current state of one order: the fold of its events (also stored as a snapshot,
/// `snapshot.rs`: a change here that alters what is folded needs `SNAPSHOT_FOLD_VERSION`
/// bumped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    pub status: OrderStatus,
    /// Set exactly when `status` is REJECTED.
    pub rejection_reason: Option<String>,
    pub version: i32,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("order {order_id} event stream does not start with OrderPlaced (version {version})")]
    CorruptStream { order_id: OrderId, version: i32 },
    #[error("order {0} is already approved; it cannot be rejected")]
    AlreadyApproved(OrderId),
    #[error("order {0} is already rejected; it cannot be approved")]
    AlreadyRejected(OrderId),
}

impl Order {
    /// Folds a stream (ordered by version). `None` for an empty stream.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a RecordedEvent>,
    ) -> Result<Option<Order>, DomainError> {
        let mut order: Option<Order> = None;
        for recorded in events {
            order = Some(Order::apply(order, recorded)?);
        }
        Ok(order)
    }

    /// One step of the fold. The first event must be OrderPlaced, and only it.
    pub fn apply(state: Option<Order>, recorded: &RecordedEvent) -> Result<Order, DomainError> {
        let corrupt = || DomainError::CorruptStream {
            order_id: recorded.order_id,
            version: recorded.version,
        };
        match (state, &recorded.event) {
            (
                None,
                OrderEvent::OrderPlaced {
                    customer_id,
                    lines,
                    total,
                    shipping_address,
                },
            ) => Ok(Order {
                id: recorded.order_id,
                customer_id: customer_id.clone(),
                lines: lines.clone(),
                total: *total,
                shipping_address: shipping_address.clone(),
                status: OrderStatus::Pending,
                rejection_reason: None,
                version: recorded.version,
                placed_at: recorded.recorded_at,
                updated_at: recorded.recorded_at,
            }),
            (None, _) | (Some(_), OrderEvent::OrderPlaced { .. }) => Err(corrupt()),
            (Some(mut order), event) => {
                match event {
                    OrderEvent::OrderApproved {} => order.status = OrderStatus::Approved,
                    OrderEvent::OrderRejected { reason } => {
                        order.status = OrderStatus::Rejected;
                        order.rejection_reason = Some(reason.clone());
                    }
                    OrderEvent::OrderPlaced { .. } => unreachable!("matched above"),
                }
                order.version = recorded.version;
                order.updated_at = recorded.recorded_at;
                Ok(order)
            }
        }
    }

    /// ApproveOrder: `Some(event)` to append, `None` when already approved (a redelivered
    /// or repeated command), an error when the order was rejected.
    pub fn approve(&self) -> Result<Option<OrderEvent>, DomainError> {
        match self.status {
            OrderStatus::Pending => Ok(Some(OrderEvent::OrderApproved {})),
            OrderStatus::Approved => Ok(None),
            OrderStatus::Rejected => Err(DomainError::AlreadyRejected(self.id)),
        }
    }

    /// RejectOrder: same rules as `approve`, mirrored.
    pub fn reject(&self, reason: &str) -> Result<Option<OrderEvent>, DomainError> {
        match self.status {
            OrderStatus::Pending => Ok(Some(OrderEvent::OrderRejected {
                reason: reason.to_owned(),
            })),
            OrderStatus::Rejected => Ok(None),
            OrderStatus::Approved => Err(DomainError::AlreadyApproved(self.id)),
        }
    }
}
