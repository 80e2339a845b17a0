//! The Kafka side: `shipping.commands` and `order.events` in, `shipping.events` out (through
//! the outbox, in the same transaction as the shipment change).

use std::sync::Arc;

use saga_consumer::{Handler, HandlerError, Incoming, Tx};
use saga_contracts::Metadata;
use saga_contracts::messages::order::{OrderApproved, OrderEvent};
use saga_contracts::messages::shipping::{
    CancelShipment, ScheduleShipment, ShipmentCancelled, ShipmentDispatched, ShipmentRefused,
    ShipmentScheduled, ShippingCommand,
};
use saga_outbox::Outbox;

use crate::shipments::{self, ScheduleOutcome, ServedCountries, ShippingError};

/// Answers ScheduleShipment and CancelShipment.
#[derive(Clone)]
pub struct CommandHandler {
    outbox: Outbox,
    served: Arc<ServedCountries>,
}

impl CommandHandler {
    pub fn new(outbox: Outbox, served: ServedCountries) -> Self {
        Self {
            outbox,
            served: Arc::new(served),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn schedule(
        &self,
        tx: &mut Tx<'_>,
        cmd: &ScheduleShipment,
    ) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&cmd.meta);
        match shipments::schedule(
            tx,
            cmd.meta.order_id,
            &cmd.address,
            &cmd.lines,
            &self.served,
        )
        .await
        .map_err(handler_error)?
        {
            ScheduleOutcome::Scheduled(shipment_id) => {
                outcome("schedule", "scheduled");
                let reply = ShipmentScheduled { meta, shipment_id };
                self.outbox.send(tx, &reply).await
            }
            ScheduleOutcome::Refused(reason) => {
                outcome("schedule", "refused");
                self.outbox
                    .send(tx, &ShipmentRefused { meta, reason })
                    .await
            }
        }?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn cancel(&self, tx: &mut Tx<'_>, cmd: &CancelShipment) -> Result<(), HandlerError> {
        let cancelled = shipments::cancel(tx, cmd.meta.order_id)
            .await
            .map_err(handler_error)?;
        outcome("cancel", if cancelled { "cancelled" } else { "nothing" });
        let reply = ShipmentCancelled {
            meta: Metadata::caused_by(&cmd.meta),
            cancelled,
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

impl Handler for CommandHandler {
    type Message = ShippingCommand;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<ShippingCommand>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            ShippingCommand::ScheduleShipment(cmd) => self.schedule(tx, cmd).await,
            ShippingCommand::CancelShipment(cmd) => self.cancel(tx, cmd).await,
        }
    }
}

/// Dispatches the scheduled shipment when its order is approved; ignores other order events.
#[derive(Clone)]
pub struct OrderEventHandler {
    outbox: Outbox,
}

impl OrderEventHandler {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    #[tracing::instrument(skip_all, fields(order_id = %event.meta.order_id))]
    pub async fn approved(
        &self,
        tx: &mut Tx<'_>,
        event: &OrderApproved,
    ) -> Result<(), HandlerError> {
        let Some(shipment_id) = shipments::dispatch(tx, event.meta.order_id)
            .await
            .map_err(handler_error)?
        else {
            return Ok(());
        };
        outcome("dispatch", "dispatched");
        let reply = ShipmentDispatched {
            meta: Metadata::caused_by(&event.meta),
            shipment_id,
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

impl Handler for OrderEventHandler {
    type Message = OrderEvent;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<OrderEvent>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            OrderEvent::OrderApproved(event) => self.approved(tx, event).await,
            // Placement and rejection are the orchestrator's business, not shipping's.
            _ => Ok(()),
        }
    }
}

fn handler_error(e: ShippingError) -> HandlerError {
    match e {
        ShippingError::Database(e) => HandlerError::Database(e),
        // A broken row will not get better by retrying.
        e @ ShippingError::CorruptState(..) => HandlerError::Permanent(e.to_string()),
    }
}

/// Counts business outcomes (`shipping_commands_total{command, outcome}`); the consumer runtime
/// already counts messages, retries and dead letters.
fn outcome(command: &'static str, outcome: &'static str) {
    metrics::counter!("shipping_commands_total", "command" => command, "outcome" => outcome)
        .increment(1);
}
