//! `inventory.commands` (to the inventory service) and `inventory.events` (from it).

use serde::{Deserialize, Serialize};

use crate::common::{Metadata, StockLine};
use crate::ids::{ReservationId, Sku};
use crate::message::topic;
use crate::topics;

/// Orchestrator -> inventory: reserve these quantities, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveStock {
    pub meta: Metadata,
    pub lines: Vec<StockLine>,
}

/// Orchestrator -> inventory: release the order's reservation (compensation; idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStock {
    pub meta: Metadata,
}

/// Every line of the order is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub meta: Metadata,
    pub reservation_id: ReservationId,
}

/// One SKU that could not be reserved (`com.example.saga.inventory.Shortage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: Sku,
    pub requested: i32,
    pub available: i32,
}

/// The reservation was refused; nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockUnavailable {
    pub meta: Metadata,
    pub shortages: Vec<Shortage>,
}

/// Reply to ReleaseStock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub meta: Metadata,
    /// False when there was nothing to release.
    pub released: bool,
}

/// The inventory service cannot carry out a well-formed command and did nothing: every command
/// gets an answer (a refused undo opens an incident in the orchestrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCommandRefused {
    pub meta: Metadata,
    /// Type name of the refused command.
    pub command: String,
    pub reason: String,
}

topic! {
    /// Everything on `inventory.commands`.
    enum InventoryCommand = topics::INVENTORY_COMMANDS;
    dir = "inventory";
    namespace = "com.example.saga.inventory";
    types = [ReserveStock, ReleaseStock];
}

topic! {
    /// Everything on `inventory.events`.
    enum InventoryEvent = topics::INVENTORY_EVENTS;
    dir = "inventory";
    namespace = "com.example.saga.inventory";
    types = [StockReserved, StockUnavailable, StockReleased, InventoryCommandRefused];
}
