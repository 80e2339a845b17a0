//! The four consumers of the orchestrator, one per topic it reads. Each turns the topic's
//! messages into saga inputs and hands them to the [`SagaRunner`] inside the runtime's
//! transaction (which also holds the inbox row).

use saga_consumer::{Handler, HandlerError, Incoming, Tx};
use saga_contracts::{InventoryEvent, OrderEvent, PaymentEvent, ShippingEvent};

use crate::runner::{SagaError, SagaRunner};
use crate::sagas::order_saga::{
    OrderEventInput, from_inventory_event, from_order_event, from_payment_event,
    from_shipping_event,
};
use crate::store::StoreError;

/// Database and outbox failures keep their type so the runtime classifies them (connection
/// loss: retried for as long as it lasts); a saga row the code cannot read is permanent.
fn to_handler_error(e: SagaError) -> HandlerError {
    match e {
        SagaError::Store(StoreError::Database(db)) => HandlerError::Database(db),
        SagaError::Store(corrupt @ StoreError::Corrupt { .. }) => {
            HandlerError::Permanent(corrupt.to_string())
        }
        SagaError::Outbox(outbox) => HandlerError::Outbox(outbox),
    }
}

/// One statement locks and reads the sagas of a whole batch of replies (see
/// [`SagaRunner::preload`]); `handle` then takes each row instead of reading it again.
async fn preload<M: saga_contracts::TopicMessage>(
    runner: &SagaRunner,
    tx: &mut Tx<'_>,
    msgs: &[&Incoming<M>],
) -> Result<(), HandlerError> {
    let orders = msgs.iter().map(|m| m.meta().order_id.into_uuid()).collect();
    runner.preload(tx, orders).await.map_err(to_handler_error)
}

/// `order.events`: OrderPlaced starts a saga; OrderApproved/OrderRejected end one.
pub struct OrderEvents(pub SagaRunner);

impl Handler for OrderEvents {
    type Message = OrderEvent;

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<OrderEvent>],
    ) -> Result<(), HandlerError> {
        preload(&self.0, tx, msgs).await
    }

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<OrderEvent>,
    ) -> Result<(), HandlerError> {
        let handled = match from_order_event(&msg.message) {
            OrderEventInput::Placed(placed) => self.0.start(tx, &placed).await,
            OrderEventInput::Reply(reply) => self.0.on_reply(tx, &reply).await,
        };
        handled.map(|_| ()).map_err(to_handler_error)
    }
}

/// `inventory.events`: StockReserved | StockUnavailable | StockReleased.
pub struct InventoryEvents(pub SagaRunner);

impl Handler for InventoryEvents {
    type Message = InventoryEvent;

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<InventoryEvent>],
    ) -> Result<(), HandlerError> {
        preload(&self.0, tx, msgs).await
    }

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<InventoryEvent>,
    ) -> Result<(), HandlerError> {
        let reply = from_inventory_event(&msg.message);
        self.0
            .on_reply(tx, &reply)
            .await
            .map(|_| ())
            .map_err(to_handler_error)
    }
}

/// `payment.events`: PaymentCharged | PaymentDeclined | PaymentRefunded.
pub struct PaymentEvents(pub SagaRunner);

impl Handler for PaymentEvents {
    type Message = PaymentEvent;

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<PaymentEvent>],
    ) -> Result<(), HandlerError> {
        preload(&self.0, tx, msgs).await
    }

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<PaymentEvent>,
    ) -> Result<(), HandlerError> {
        let reply = from_payment_event(&msg.message);
        self.0
            .on_reply(tx, &reply)
            .await
            .map(|_| ())
            .map_err(to_handler_error)
    }
}

/// `shipping.events`: ShipmentScheduled | ShipmentRefused | ShipmentCancelled (and
/// ShipmentDispatched, which is not for the saga).
pub struct ShippingEvents(pub SagaRunner);

impl Handler for ShippingEvents {
    type Message = ShippingEvent;

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<ShippingEvent>],
    ) -> Result<(), HandlerError> {
        preload(&self.0, tx, msgs).await
    }

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<ShippingEvent>,
    ) -> Result<(), HandlerError> {
        let Some(reply) = from_shipping_event(&msg.message) else {
            return Ok(());
        };
        self.0
            .on_reply(tx, &reply)
            .await
            .map(|_| ())
            .map_err(to_handler_error)
    }
}
