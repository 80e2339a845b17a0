//! `payment.commands` (to the payment service) and `payment.events` (from it).

use serde::{Deserialize, Serialize};

use crate::common::Metadata;
use crate::ids::{CustomerId, PaymentId};
use crate::message::topic;
use crate::money::Money;
use crate::topics;

/// Orchestrator -> payment: charge the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargePayment {
    pub meta: Metadata,
    pub customer_id: CustomerId,
    pub amount: Money,
}

/// Orchestrator -> payment: refund whatever was charged (compensation; idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub meta: Metadata,
}

/// The customer was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCharged {
    pub meta: Metadata,
    pub payment_id: PaymentId,
    pub amount: Money,
}

/// Why a charge was declined (`com.example.saga.payment.DeclineReason`). The Avro enum has
/// the default `OTHER`, so readers map symbols added later to `Other`. Variant order must match
/// the symbol order in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclineReason {
    UnknownAccount,
    InsufficientCredit,
    CurrencyMismatch,
    Other,
}

/// The charge was declined; nothing was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDeclined {
    pub meta: Metadata,
    pub reason: DeclineReason,
    pub detail: String,
}

/// Reply to RefundPayment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub meta: Metadata,
    /// Zero when nothing had been charged.
    pub amount: Money,
}

/// The payment service cannot carry out a well-formed command and did nothing: every command
/// gets an answer (a refused undo opens an incident in the orchestrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCommandRefused {
    pub meta: Metadata,
    /// Type name of the refused command.
    pub command: String,
    pub reason: String,
}

topic! {
    /// Everything on `payment.commands`.
    enum PaymentCommand = topics::PAYMENT_COMMANDS;
    dir = "payment";
    namespace = "com.example.saga.payment";
    types = [ChargePayment, RefundPayment];
}

topic! {
    /// Everything on `payment.events`.
    enum PaymentEvent = topics::PAYMENT_EVENTS;
    dir = "payment";
    namespace = "com.example.saga.payment";
    types = [PaymentCharged, PaymentDeclined, PaymentRefunded, PaymentCommandRefused];
}
