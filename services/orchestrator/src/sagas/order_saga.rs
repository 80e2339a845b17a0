//! The order saga, as a step table.
//!
//! | # | step              | action           | success           | failure           | undo           | undo ack          |
//! |---|-------------------|------------------|-------------------|-------------------|----------------|-------------------|
//! | 0 | reserve_stock     | ReserveStock     | StockReserved     | StockUnavailable  | ReleaseStock   | StockReleased     |
//! | 1 | charge_payment    | ChargePayment    | PaymentCharged    | PaymentDeclined   | RefundPayment  | PaymentRefunded   |
//! | 2 | schedule_shipment | ScheduleShipment | ShipmentScheduled | ShipmentRefused   | CancelShipment | ShipmentCancelled |
//! | 3 | approve_order     | ApproveOrder     | OrderApproved     | —                 | —              | —                 |
//!
//! On a failure the completed steps are undone latest first, then `RejectOrder { reason }` is
//! sent and the saga ends when `OrderRejected` comes back. The table below is the only place
//! that knows this order; `crate::engine` interprets it.
//!
//! Each step that can be undone has a deadline (default [`STEP_DEADLINE`], overridable in
//! `saga.step_deadlines_ms`): past it the step counts as failed, its undo is sent (the
//! participant's tombstone refuses a late action) and the completed steps are unwound.
//! `approve_order` has none: it cannot be undone, so it is re-sent until its attempts run out.
//! A `*CommandRefused` reply to an action is a failure; to an undo or the abort notice it
//! opens an incident.

use std::time::Duration;

use saga_contracts::{
    Address, ApproveOrder, CancelShipment, ChargePayment, CustomerId, InventoryEvent, Metadata,
    Money, OrderEvent, OrderLine, OrderPlaced, PaymentEvent, PaymentId, RefundPayment, RejectOrder,
    ReleaseStock, ReservationId, ReserveStock, ScheduleShipment, ShipmentId, ShippingEvent,
    StockLine,
};
use saga_outbox::{Enqueue, Outbox, OutboxError};
use serde::{Deserialize, Serialize};

use crate::engine::{Abort, Reply, Saga, SagaDefinition, Step, Undo};

/// Marker type binding the order saga's types together for the engine.
pub struct OrderSaga;

impl Saga for OrderSaga {
    type Data = OrderSagaData;
    type Command = SagaCommand;
    type ReplyKind = ReplyKind;
    type Ctx = Metadata;
}

/// Default deadline of each step that can be undone: generous next to the first re-send
/// (`saga.retry_timeout_ms`, 30 s), so a lost command is re-sent a few times first.
pub const STEP_DEADLINE: Duration = Duration::from_secs(120);

pub static ORDER_SAGA: SagaDefinition<OrderSaga> = SagaDefinition {
    name: "order",
    steps: &[
        Step {
            name: "reserve_stock",
            action: reserve_stock,
            succeeded_on: ReplyKind::StockReserved,
            failed_on: &[ReplyKind::StockUnavailable, ReplyKind::ReserveRefused],
            undo: Some(Undo {
                name: "release_stock",
                command: release_stock,
                acked_by: ReplyKind::StockReleased,
                refused_on: &[ReplyKind::ReleaseRefused],
            }),
            deadline: Some(STEP_DEADLINE),
        },
        Step {
            name: "charge_payment",
            action: charge_payment,
            succeeded_on: ReplyKind::PaymentCharged,
            failed_on: &[ReplyKind::PaymentDeclined, ReplyKind::ChargeRefused],
            undo: Some(Undo {
                name: "refund_payment",
                command: refund_payment,
                acked_by: ReplyKind::PaymentRefunded,
                refused_on: &[ReplyKind::RefundRefused],
            }),
            deadline: Some(STEP_DEADLINE),
        },
        Step {
            name: "schedule_shipment",
            action: schedule_shipment,
            succeeded_on: ReplyKind::ShipmentScheduled,
            failed_on: &[ReplyKind::ShipmentRefused],
            undo: Some(Undo {
                name: "cancel_shipment",
                command: cancel_shipment,
                acked_by: ReplyKind::ShipmentCancelled,
                refused_on: &[],
            }),
            deadline: Some(STEP_DEADLINE),
        },
        Step {
            name: "approve_order",
            action: approve_order,
            succeeded_on: ReplyKind::OrderApproved,
            failed_on: &[ReplyKind::ApproveRefused],
            undo: None,
            deadline: None,
        },
    ],
    abort: Abort {
        name: "reject_order",
        command: reject_order,
        acked_by: ReplyKind::OrderRejected,
        refused_on: &[ReplyKind::RejectRefused],
    },
};

fn stock_lines(data: &OrderSagaData) -> Vec<StockLine> {
    data.lines.iter().map(StockLine::from).collect()
}

fn reserve_stock(data: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::ReserveStock(ReserveStock {
        meta,
        lines: stock_lines(data),
    })
}

fn release_stock(_: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::ReleaseStock(ReleaseStock { meta })
}

fn charge_payment(data: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::ChargePayment(ChargePayment {
        meta,
        customer_id: data.customer_id.clone(),
        amount: data.total,
    })
}

fn refund_payment(_: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::RefundPayment(RefundPayment { meta })
}

fn schedule_shipment(data: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::ScheduleShipment(ScheduleShipment {
        meta,
        address: data.shipping_address.clone(),
        lines: stock_lines(data),
    })
}

fn cancel_shipment(_: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::CancelShipment(CancelShipment { meta })
}

fn approve_order(_: &OrderSagaData, meta: Metadata) -> SagaCommand {
    SagaCommand::ApproveOrder(ApproveOrder { meta })
}

fn reject_order(_: &OrderSagaData, reason: &str, meta: Metadata) -> SagaCommand {
    SagaCommand::RejectOrder(RejectOrder {
        meta,
        reason: reason.to_owned(),
    })
}

/// What the saga carries (the `data` jsonb column): the order as placed, plus the ids the
/// participants returned, for the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSagaData {
    pub customer_id: CustomerId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    #[serde(default)]
    pub reservation_id: Option<ReservationId>,
    #[serde(default)]
    pub payment_id: Option<PaymentId>,
    #[serde(default)]
    pub shipment_id: Option<ShipmentId>,
}

impl OrderSagaData {
    pub fn from_placed(placed: &OrderPlaced) -> Self {
        OrderSagaData {
            customer_id: placed.customer_id.clone(),
            lines: placed.lines.clone(),
            total: placed.total,
            shipping_address: placed.shipping_address.clone(),
            reservation_id: None,
            payment_id: None,
            shipment_id: None,
        }
    }

    /// Keep an id a participant returned.
    pub fn record(&mut self, fact: Fact) {
        match fact {
            Fact::Reservation(id) => self.reservation_id = Some(id),
            Fact::Payment(id) => self.payment_id = Some(id),
            Fact::Shipment(id) => self.shipment_id = Some(id),
        }
    }
}

/// An id from a success reply, kept in the saga's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Reservation(ReservationId),
    Payment(PaymentId),
    Shipment(ShipmentId),
}

/// Every reply the saga reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    StockReserved,
    StockUnavailable,
    StockReleased,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentScheduled,
    ShipmentRefused,
    ShipmentCancelled,
    OrderApproved,
    OrderRejected,
    /// `*CommandRefused`, by the command refused.
    ReserveRefused,
    ReleaseRefused,
    ChargeRefused,
    RefundRefused,
    ApproveRefused,
    RejectRefused,
    /// A refusal of a command this saga does not send; never matches a step.
    OtherRefused,
}

/// A participant's `*CommandRefused`: the kind by the command refused, the reason readable.
fn refused(meta: &Metadata, type_name: &'static str, command: &str, reason: &str) -> IncomingReply {
    let kind = match command {
        "ReserveStock" => ReplyKind::ReserveRefused,
        "ReleaseStock" => ReplyKind::ReleaseRefused,
        "ChargePayment" => ReplyKind::ChargeRefused,
        "RefundPayment" => ReplyKind::RefundRefused,
        "ApproveOrder" => ReplyKind::ApproveRefused,
        "RejectOrder" => ReplyKind::RejectRefused,
        _ => ReplyKind::OtherRefused,
    };
    IncomingReply::new(meta, type_name, kind).failed(format!("{command} refused: {reason}"))
}

/// A decoded reply, reduced to what the saga needs.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingReply {
    pub meta: Metadata,
    pub type_name: &'static str,
    pub reply: Reply<ReplyKind>,
    pub fact: Option<Fact>,
}

impl IncomingReply {
    fn new(meta: &Metadata, type_name: &'static str, kind: ReplyKind) -> Self {
        IncomingReply {
            meta: meta.clone(),
            type_name,
            reply: Reply { kind, reason: None },
            fact: None,
        }
    }

    fn failed(mut self, reason: String) -> Self {
        self.reply.reason = Some(reason);
        self
    }

    fn with_fact(mut self, fact: Fact) -> Self {
        self.fact = Some(fact);
        self
    }
}

/// What arrives on `order.events`: either a new saga or a reply to one.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderEventInput {
    Placed(Box<OrderPlaced>),
    Reply(IncomingReply),
}

pub fn from_order_event(ev: &OrderEvent) -> OrderEventInput {
    match ev {
        OrderEvent::OrderPlaced(p) => OrderEventInput::Placed(Box::new(p.clone())),
        OrderEvent::OrderApproved(m) => OrderEventInput::Reply(IncomingReply::new(
            &m.meta,
            "OrderApproved",
            ReplyKind::OrderApproved,
        )),
        OrderEvent::OrderRejected(m) => OrderEventInput::Reply(IncomingReply::new(
            &m.meta,
            "OrderRejected",
            ReplyKind::OrderRejected,
        )),
        OrderEvent::OrderCommandRefused(m) => OrderEventInput::Reply(refused(
            &m.meta,
            "OrderCommandRefused",
            &m.command,
            &m.reason,
        )),
    }
}

pub fn from_inventory_event(ev: &InventoryEvent) -> IncomingReply {
    match ev {
        InventoryEvent::StockReserved(m) => {
            IncomingReply::new(&m.meta, "StockReserved", ReplyKind::StockReserved)
                .with_fact(Fact::Reservation(m.reservation_id))
        }
        InventoryEvent::StockUnavailable(m) => {
            let shortages: Vec<String> = m
                .shortages
                .iter()
                .map(|s| {
                    format!(
                        "{} (requested {}, available {})",
                        s.sku.as_str(),
                        s.requested,
                        s.available
                    )
                })
                .collect();
            IncomingReply::new(&m.meta, "StockUnavailable", ReplyKind::StockUnavailable)
                .failed(format!("out of stock: {}", shortages.join(", ")))
        }
        InventoryEvent::StockReleased(m) => {
            IncomingReply::new(&m.meta, "StockReleased", ReplyKind::StockReleased)
        }
        InventoryEvent::InventoryCommandRefused(m) => {
            refused(&m.meta, "InventoryCommandRefused", &m.command, &m.reason)
        }
    }
}

pub fn from_payment_event(ev: &PaymentEvent) -> IncomingReply {
    match ev {
        PaymentEvent::PaymentCharged(m) => {
            IncomingReply::new(&m.meta, "PaymentCharged", ReplyKind::PaymentCharged)
                .with_fact(Fact::Payment(m.payment_id))
        }
        PaymentEvent::PaymentDeclined(m) => {
            let code = serde_json::to_value(m.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", m.reason));
            let reason = if m.detail.is_empty() {
                format!("payment declined: {code}")
            } else {
                format!("payment declined: {code} ({})", m.detail)
            };
            IncomingReply::new(&m.meta, "PaymentDeclined", ReplyKind::PaymentDeclined)
                .failed(reason)
        }
        PaymentEvent::PaymentRefunded(m) => {
            IncomingReply::new(&m.meta, "PaymentRefunded", ReplyKind::PaymentRefunded)
        }
        PaymentEvent::PaymentCommandRefused(m) => {
            refused(&m.meta, "PaymentCommandRefused", &m.command, &m.reason)
        }
    }
}

/// `None` for shipping events that are not replies to the saga (ShipmentDispatched).
pub fn from_shipping_event(ev: &ShippingEvent) -> Option<IncomingReply> {
    Some(match ev {
        ShippingEvent::ShipmentScheduled(m) => {
            IncomingReply::new(&m.meta, "ShipmentScheduled", ReplyKind::ShipmentScheduled)
                .with_fact(Fact::Shipment(m.shipment_id))
        }
        ShippingEvent::ShipmentRefused(m) => {
            IncomingReply::new(&m.meta, "ShipmentRefused", ReplyKind::ShipmentRefused)
                .failed(format!("shipment refused: {}", m.reason))
        }
        ShippingEvent::ShipmentCancelled(m) => {
            IncomingReply::new(&m.meta, "ShipmentCancelled", ReplyKind::ShipmentCancelled)
        }
        ShippingEvent::ShipmentDispatched(_) => return None,
    })
}

/// Every command the saga sends.
#[derive(Clone, Debug, PartialEq)]
pub enum SagaCommand {
    ReserveStock(ReserveStock),
    ReleaseStock(ReleaseStock),
    ChargePayment(ChargePayment),
    RefundPayment(RefundPayment),
    ScheduleShipment(ScheduleShipment),
    CancelShipment(CancelShipment),
    ApproveOrder(ApproveOrder),
    RejectOrder(RejectOrder),
}

macro_rules! each_command {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            SagaCommand::ReserveStock($m) => $e,
            SagaCommand::ReleaseStock($m) => $e,
            SagaCommand::ChargePayment($m) => $e,
            SagaCommand::RefundPayment($m) => $e,
            SagaCommand::ScheduleShipment($m) => $e,
            SagaCommand::CancelShipment($m) => $e,
            SagaCommand::ApproveOrder($m) => $e,
            SagaCommand::RejectOrder($m) => $e,
        }
    };
}

impl SagaCommand {
    pub fn meta(&self) -> &Metadata {
        each_command!(self, m => &m.meta)
    }

    pub fn type_name(&self) -> &'static str {
        fn name<M: saga_contracts::Message>(_: &M) -> &'static str {
            M::TYPE_NAME
        }
        each_command!(self, m => name(m))
    }

    pub fn topic(&self) -> &'static str {
        fn topic<M: saga_contracts::Message>(_: &M) -> &'static str {
            M::TOPIC
        }
        each_command!(self, m => topic(m))
    }

    /// Enqueue through the outbox, inside the caller's transaction.
    pub async fn send<E: Enqueue>(&self, outbox: &Outbox, tx: &mut E) -> Result<(), OutboxError> {
        each_command!(self, m => outbox.send(tx, m).await)
    }
}

#[cfg(test)]
mod tests {
    use saga_contracts::{Currency, OrderId, SagaId, Sku};

    use super::*;
    use crate::engine::Issue;
    use crate::sagas::test_helpers::*;

    fn data() -> OrderSagaData {
        let eur = Currency::parse("EUR").unwrap();
        OrderSagaData {
            customer_id: CustomerId::parse("alice").unwrap(),
            lines: vec![OrderLine {
                sku: Sku::parse("SKU-1").unwrap(),
                quantity: 2,
                unit_price: Money::new(1250, eur),
            }],
            total: Money::new(2500, eur),
            shipping_address: Address {
                name: "Alice".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "Paris".into(),
                postal_code: "75001".into(),
                country: "FR".into(),
            },
            reservation_id: None,
            payment_id: None,
            shipment_id: None,
        }
    }

    #[test]
    fn every_action_run_twice_is_idempotent() {
        assert_happy_path_idempotent(&ORDER_SAGA);
    }

    #[test]
    fn a_failure_at_each_step_unwinds_exactly_the_completed_steps_in_reverse() {
        let seen = assert_failures_unwind(&ORDER_SAGA);
        // reserve fails (unavailable or refused): nothing to undo; charge fails (declined or
        // refused): release; schedule fails: refund, release; approve refused: all three.
        assert_eq!(
            seen,
            vec![
                (0, vec![]),
                (0, vec![]),
                (1, vec![0]),
                (1, vec![0]),
                (2, vec![1, 0]),
                (3, vec![2, 1, 0])
            ]
        );
    }

    #[test]
    fn commands_are_built_from_the_saga_data() {
        let meta = Metadata::first(OrderId::new()).with_saga(SagaId::new());
        let d = data();
        match ORDER_SAGA.build(Issue::Action(0), &d, None, meta.clone()) {
            SagaCommand::ReserveStock(c) => {
                assert_eq!(c.lines.len(), 1);
                assert_eq!(c.lines[0].quantity, 2);
                assert_eq!(c.meta, meta);
            }
            other => panic!("expected ReserveStock, got {other:?}"),
        }
        match ORDER_SAGA.build(Issue::Action(1), &d, None, meta.clone()) {
            SagaCommand::ChargePayment(c) => assert_eq!(c.amount, d.total),
            other => panic!("expected ChargePayment, got {other:?}"),
        }
        match ORDER_SAGA.build(Issue::Action(2), &d, None, meta.clone()) {
            SagaCommand::ScheduleShipment(c) => assert_eq!(c.address, d.shipping_address),
            other => panic!("expected ScheduleShipment, got {other:?}"),
        }
        let undo_names: Vec<_> = (0..3)
            .map(|j| {
                ORDER_SAGA
                    .build(Issue::Undo(j), &d, None, meta.clone())
                    .type_name()
            })
            .collect();
        assert_eq!(
            undo_names,
            ["ReleaseStock", "RefundPayment", "CancelShipment"]
        );
        match ORDER_SAGA.build(Issue::Abort, &d, Some("out of stock"), meta) {
            SagaCommand::RejectOrder(c) => assert_eq!(c.reason, "out of stock"),
            other => panic!("expected RejectOrder, got {other:?}"),
        }
    }

    #[test]
    fn failure_replies_carry_a_readable_reason() {
        let meta = Metadata::first(OrderId::new());
        let r = from_inventory_event(&InventoryEvent::StockUnavailable(
            saga_contracts::StockUnavailable {
                meta: meta.clone(),
                shortages: vec![saga_contracts::Shortage {
                    sku: Sku::parse("SKU-1").unwrap(),
                    requested: 3,
                    available: 1,
                }],
            },
        ));
        assert_eq!(
            r.reply.reason.as_deref(),
            Some("out of stock: SKU-1 (requested 3, available 1)")
        );
        let r = from_payment_event(&PaymentEvent::PaymentDeclined(
            saga_contracts::PaymentDeclined {
                meta,
                reason: saga_contracts::DeclineReason::InsufficientCredit,
                detail: "limit 10.00 EUR".into(),
            },
        ));
        assert_eq!(
            r.reply.reason.as_deref(),
            Some("payment declined: INSUFFICIENT_CREDIT (limit 10.00 EUR)")
        );
    }
}
