//! `shipping.commands` (to the shipping service) and `shipping.events` (from it).

use serde::{Deserialize, Serialize};

use crate::common::{Address, Metadata, StockLine};
use crate::ids::ShipmentId;
use crate::message::topic;
use crate::topics;

/// Orchestrator -> shipping: schedule delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleShipment {
    pub meta: Metadata,
    pub address: Address,
    pub lines: Vec<StockLine>,
}

/// Orchestrator -> shipping: cancel the order's shipment (compensation; idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelShipment {
    pub meta: Metadata,
}

/// A shipment is scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentScheduled {
    pub meta: Metadata,
    pub shipment_id: ShipmentId,
}

/// Shipping refused the order; nothing is scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentRefused {
    pub meta: Metadata,
    pub reason: String,
}

/// Reply to CancelShipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentCancelled {
    pub meta: Metadata,
    /// False when there was nothing to cancel.
    pub cancelled: bool,
}

/// The shipment left the warehouse (after the order was approved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentDispatched {
    pub meta: Metadata,
    pub shipment_id: ShipmentId,
}

topic! {
    /// Everything on `shipping.commands`.
    enum ShippingCommand = topics::SHIPPING_COMMANDS;
    dir = "shipping";
    namespace = "com.example.saga.shipping";
    types = [ScheduleShipment, CancelShipment];
}

topic! {
    /// Everything on `shipping.events`.
    enum ShippingEvent = topics::SHIPPING_EVENTS;
    dir = "shipping";
    namespace = "com.example.saga.shipping";
    types = [ShipmentScheduled, ShipmentRefused, ShipmentCancelled, ShipmentDispatched];
}
