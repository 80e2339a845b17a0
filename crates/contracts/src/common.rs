//! Records shared by several messages: `Metadata`, `Address`, `OrderLine`, `StockLine`, and the
//! `Timestamp` of the `timestamp-micros` logical type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{MessageId, OrderId, SagaId, Sku};
use crate::money::Money;

/// Microseconds since the Unix epoch, UTC: the Avro `timestamp-micros` logical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Utc::now().into()
    }

    pub const fn as_micros(&self) -> i64 {
        self.0
    }

    /// `None` only for instants chrono cannot represent (hundreds of thousands of years away).
    pub fn to_datetime(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.timestamp_micros())
    }
}

impl From<Timestamp> for DateTime<Utc> {
    /// Saturates to chrono's range rather than panicking on an out-of-range value.
    fn from(t: Timestamp) -> DateTime<Utc> {
        t.to_datetime().unwrap_or(if t.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    }
}

/// The facts every message carries in its record (`com.example.saga.Metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub message_id: MessageId,
    pub order_id: OrderId,
    pub saga_id: Option<SagaId>,
    pub causation_id: Option<MessageId>,
    #[serde(with = "crate::ids::uuid_as_string")]
    pub correlation_id: Uuid,
    pub occurred_at: Timestamp,
}

impl Metadata {
    /// First message of a causal chain (OrderPlaced): a new correlation id, no causation.
    pub fn first(order_id: OrderId) -> Metadata {
        Metadata {
            message_id: MessageId::new(),
            order_id,
            saga_id: None,
            causation_id: None,
            correlation_id: Uuid::now_v7(),
            occurred_at: Timestamp::now(),
        }
    }

    /// A message caused by `cause`: new message id and time, same order, saga and correlation,
    /// causation = `cause.message_id`.
    pub fn caused_by(cause: &Metadata) -> Metadata {
        Metadata {
            message_id: MessageId::new(),
            order_id: cause.order_id,
            saga_id: cause.saga_id,
            causation_id: Some(cause.message_id),
            correlation_id: cause.correlation_id,
            occurred_at: Timestamp::now(),
        }
    }

    pub fn with_saga(self, saga_id: SagaId) -> Metadata {
        Metadata {
            saga_id: Some(saga_id),
            ..self
        }
    }
}

/// A postal delivery address (`com.example.saga.Address`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
}

/// One line of an order (`com.example.saga.OrderLine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: i32,
    pub unit_price: Money,
}

impl OrderLine {
    /// `quantity x unit_price`, `None` on overflow.
    pub fn line_total(&self) -> Option<Money> {
        self.unit_price.checked_mul(i64::from(self.quantity)).ok()
    }
}

/// A quantity of one SKU without a price (`com.example.saga.StockLine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLine {
    pub sku: Sku,
    pub quantity: i32,
}

impl From<&OrderLine> for StockLine {
    fn from(line: &OrderLine) -> StockLine {
        StockLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_chain() {
        let order = OrderId::new();
        let first = Metadata::first(order);
        assert_eq!(first.causation_id, None);
        assert_eq!(first.saga_id, None);
        let saga = SagaId::new();
        let next = Metadata::caused_by(&first).with_saga(saga);
        assert_ne!(next.message_id, first.message_id);
        assert_eq!(next.order_id, order);
        assert_eq!(next.correlation_id, first.correlation_id);
        assert_eq!(next.causation_id, Some(first.message_id));
        assert_eq!(next.saga_id, Some(saga));
        let third = Metadata::caused_by(&next);
        assert_eq!(third.saga_id, Some(saga));
        assert_eq!(third.causation_id, Some(next.message_id));
    }

    #[test]
    fn timestamp_chrono_round_trip() {
        let now = Utc::now();
        let ts = Timestamp::from(now);
        let back: DateTime<Utc> = ts.into();
        assert_eq!(back.timestamp_micros(), now.timestamp_micros());
        let far: DateTime<Utc> = Timestamp(i64::MAX).into();
        assert_eq!(far, DateTime::<Utc>::MAX_UTC);
    }
}
