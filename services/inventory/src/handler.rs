//! The Kafka side: `inventory.commands` in, `inventory.events` out (through the outbox, in the
//! same transaction as the stock change).

use saga_consumer::{Handler, HandlerError, Incoming};
use saga_contracts::Metadata;
use saga_contracts::messages::inventory::{
    InventoryCommand, ReleaseStock, ReserveStock, StockReleased, StockReserved, StockUnavailable,
};
use saga_outbox::Outbox;
use sqlx::PgConnection;

use crate::stock::{self, InventoryError, ReserveOutcome};

/// Answers ReserveStock and ReleaseStock.
#[derive(Clone)]
pub struct InventoryHandler {
    outbox: Outbox,
}

impl InventoryHandler {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn reserve(
        &self,
        tx: &mut PgConnection,
        cmd: &ReserveStock,
    ) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&cmd.meta);
        match stock::reserve(tx, cmd.meta.order_id, &cmd.lines)
            .await
            .map_err(handler_error)?
        {
            ReserveOutcome::Reserved(reservation_id) => {
                outcome("reserve", "reserved");
                let reply = StockReserved {
                    meta,
                    reservation_id,
                };
                self.outbox.send(tx, &reply).await
            }
            ReserveOutcome::Unavailable(shortages) => {
                outcome("reserve", "unavailable");
                self.outbox
                    .send(tx, &StockUnavailable { meta, shortages })
                    .await
            }
            // Refused without shortages: nothing is short, the order was already compensated.
            ReserveOutcome::AlreadyReleased => {
                outcome("reserve", "refused_after_release");
                let reply = StockUnavailable {
                    meta,
                    shortages: Vec::new(),
                };
                self.outbox.send(tx, &reply).await
            }
        }?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn release(
        &self,
        tx: &mut PgConnection,
        cmd: &ReleaseStock,
    ) -> Result<(), HandlerError> {
        let released = stock::release(tx, cmd.meta.order_id)
            .await
            .map_err(handler_error)?;
        outcome("release", if released { "released" } else { "nothing" });
        let reply = StockReleased {
            meta: Metadata::caused_by(&cmd.meta),
            released,
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

impl Handler for InventoryHandler {
    type Message = InventoryCommand;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        msg: &Incoming<InventoryCommand>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            InventoryCommand::ReserveStock(cmd) => self.reserve(tx, cmd).await,
            InventoryCommand::ReleaseStock(cmd) => self.release(tx, cmd).await,
        }
    }
}

fn handler_error(e: InventoryError) -> HandlerError {
    match e {
        InventoryError::Database(e) => HandlerError::Database(e),
        // A malformed command or a broken row will not get better by retrying.
        e @ (InventoryError::InvalidQuantity { .. } | InventoryError::CorruptState(..)) => {
            HandlerError::Permanent(e.to_string())
        }
    }
}

/// Counts business outcomes (`inventory_commands_total{command, outcome}`); the consumer runtime
/// already counts messages, retries and dead letters.
fn outcome(command: &'static str, outcome: &'static str) {
    metrics::counter!("inventory_commands_total", "command" => command, "outcome" => outcome)
        .increment(1);
}
