//! saga-contracts: the Rust side of `schemas/`.
//!
//! - [`ids`], [`money`], [`common`]: typed ids, money, and the records every message shares.
//! - [`messages`]: one struct per `.avsc` and one enum per topic.
//! - [`codec`]: Avro in the Confluent wire format over the schema registry.
//! - [`compat`]: the schema compatibility gate (`cargo run -p saga-contracts --bin schema-compat`).
//!
//! The `.avsc` files are the contract; the drift test (`tests/it/drift.rs`) fails when a struct
//! and its schema disagree.

pub mod codec;
pub mod common;
pub mod compat;
pub mod error;
pub mod ids;
pub mod message;
pub mod messages;
pub mod money;

pub use codec::{Codec, Credentials};
pub use common::{Address, Metadata, OrderLine, StockLine, Timestamp};
pub use error::{DecodeError, EncodeError, RegistryError};
pub use ids::{CustomerId, MessageId, OrderId, PaymentId, ReservationId, SagaId, ShipmentId, Sku};
pub use message::{Message, MessageType, TopicMessage};
pub use messages::inventory::*;
pub use messages::order::*;
pub use messages::payment::*;
pub use messages::shipping::*;
pub use money::{Currency, Money};

/// Topic names (see `schemas/README.md` for who produces and consumes each).
pub mod topics {
    pub const ORDER_EVENTS: &str = "order.events";
    pub const ORDER_COMMANDS: &str = "order.commands";
    pub const INVENTORY_COMMANDS: &str = "inventory.commands";
    pub const INVENTORY_EVENTS: &str = "inventory.events";
    pub const PAYMENT_COMMANDS: &str = "payment.commands";
    pub const PAYMENT_EVENTS: &str = "payment.events";
    pub const SHIPPING_COMMANDS: &str = "shipping.commands";
    pub const SHIPPING_EVENTS: &str = "shipping.events";
    pub const DEAD_LETTERS: &str = "dead-letters";

    /// Every topic that carries saga messages (not the dead letters).
    pub const ALL: [&str; 8] = [
        ORDER_EVENTS,
        ORDER_COMMANDS,
        INVENTORY_COMMANDS,
        INVENTORY_EVENTS,
        PAYMENT_COMMANDS,
        PAYMENT_EVENTS,
        SHIPPING_COMMANDS,
        SHIPPING_EVENTS,
    ];
}

/// Every message type, grouped by topic.
pub const ALL_TYPES: [&[MessageType]; 8] = [
    OrderEvent::TYPES,
    OrderCommand::TYPES,
    InventoryCommand::TYPES,
    InventoryEvent::TYPES,
    PaymentCommand::TYPES,
    PaymentEvent::TYPES,
    ShippingCommand::TYPES,
    ShippingEvent::TYPES,
];

/// Every message type, flat.
pub fn all_message_types() -> impl Iterator<Item = &'static MessageType> {
    ALL_TYPES.iter().flat_map(|t| t.iter())
}
