//! `order.events` (produced by the order service) and `order.commands` (to the order service).

use serde::{Deserialize, Serialize};

use crate::common::{Address, Metadata, OrderLine};
use crate::ids::CustomerId;
use crate::message::topic;
use crate::money::Money;
use crate::topics;

/// A customer placed an order; starts the saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub meta: Metadata,
    pub customer_id: CustomerId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
}

/// The saga completed and the order is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderApproved {
    pub meta: Metadata,
}

/// The order was rejected; every completed step has been undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub meta: Metadata,
    pub reason: String,
}

/// Orchestrator -> order: mark the order approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveOrder {
    pub meta: Metadata,
}

/// Orchestrator -> order: mark the order rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectOrder {
    pub meta: Metadata,
    pub reason: String,
}

/// The order service cannot carry out a well-formed command and did nothing: every command
/// gets an answer (a refused undo opens an incident in the orchestrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCommandRefused {
    pub meta: Metadata,
    /// Type name of the refused command.
    pub command: String,
    pub reason: String,
}

topic! {
    /// Everything on `order.events`.
    enum OrderEvent = topics::ORDER_EVENTS;
    dir = "order";
    namespace = "com.example.saga.order";
    types = [OrderPlaced, OrderApproved, OrderRejected, OrderCommandRefused];
}

topic! {
    /// Everything on `order.commands`.
    enum OrderCommand = topics::ORDER_COMMANDS;
    dir = "order";
    namespace = "com.example.saga.order";
    types = [ApproveOrder, RejectOrder];
}
