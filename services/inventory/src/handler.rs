//! The Kafka side: `inventory.commands` in, `inventory.events` out (through the outbox, in the
//! same transaction as the stock change).

use saga_consumer::{Handler, HandlerError, Incoming, Tx};
use saga_contracts::Metadata;
use saga_contracts::messages::inventory::{
    InventoryCommand, InventoryCommandRefused, ReleaseStock, ReserveStock, StockReleased,
    StockReserved, StockUnavailable,
};
use saga_outbox::Outbox;

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
    pub async fn reserve(&self, tx: &mut Tx<'_>, cmd: &ReserveStock) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&cmd.meta);
        // In a savepoint: a refused command (invalid quantity, a stock figure that would
        // overflow) leaves nothing behind, and the refusal is still sent in this transaction.
        let mut sp = sqlx::Acquire::begin(tx.conn()).await?;
        let result = stock::reserve(&mut sp, cmd.meta.order_id, &cmd.lines).await;
        let result = match result {
            Err(e) if refusal(&e) => {
                sp.rollback().await?;
                outcome("reserve", "refused");
                return self.refuse(tx, &cmd.meta, "ReserveStock", &e).await;
            }
            // Any other failure (a deadlock, a lost connection) must reach the runtime as it
            // is, to be classified and retried: roll the savepoint back. Releasing a failed
            // savepoint fails with 25P02 (transaction aborted), a permanent error that would
            // dead-letter a command that only had to be retried (found by the chaos soak).
            Err(e) => {
                sp.rollback().await?;
                Err(e)
            }
            Ok(done) => {
                sp.commit().await?;
                Ok(done)
            }
        };
        match result.map_err(handler_error)? {
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
    pub async fn release(&self, tx: &mut Tx<'_>, cmd: &ReleaseStock) -> Result<(), HandlerError> {
        let mut sp = sqlx::Acquire::begin(tx.conn()).await?;
        let released = match stock::release(&mut sp, cmd.meta.order_id).await {
            Err(e) if refusal(&e) => {
                sp.rollback().await?;
                outcome("release", "refused");
                return self.refuse(tx, &cmd.meta, "ReleaseStock", &e).await;
            }
            // Any other failure (a deadlock, a lost connection) must reach the runtime as it
            // is, to be classified and retried: roll the savepoint back. Releasing a failed
            // savepoint fails with 25P02 (transaction aborted), a permanent error that would
            // dead-letter a command that only had to be retried (found by the chaos soak).
            Err(e) => {
                sp.rollback().await?;
                return Err(handler_error(e));
            }
            Ok(done) => {
                sp.commit().await?;
                done
            }
        };
        outcome("release", if released { "released" } else { "nothing" });
        let reply = StockReleased {
            meta: Metadata::caused_by(&cmd.meta),
            released,
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

impl InventoryHandler {
    /// Answer a well-formed command that cannot be carried out: every command gets a reply.
    async fn refuse(
        &self,
        tx: &mut Tx<'_>,
        cmd: &Metadata,
        command: &str,
        error: &InventoryError,
    ) -> Result<(), HandlerError> {
        tracing::warn!(%error, command, "command refused");
        let reply = InventoryCommandRefused {
            meta: Metadata::caused_by(cmd),
            command: command.to_owned(),
            reason: refusal_reason(error),
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

/// Errors that are the command's fault or a business limit, not the service's: answered with
/// InventoryCommandRefused instead of being dead-lettered.
fn refusal(e: &InventoryError) -> bool {
    match e {
        InventoryError::InvalidQuantity { .. } => true,
        InventoryError::Database(db) => is_numeric_overflow(db),
        InventoryError::CorruptState(..) => false,
    }
}

/// SQLSTATE 22003 numeric_value_out_of_range: a stock figure would leave the int4 range.
fn is_numeric_overflow(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "22003")
}

fn refusal_reason(e: &InventoryError) -> String {
    match e {
        InventoryError::Database(_) => "a stock figure would overflow".to_owned(),
        other => other.to_string(),
    }
}

impl Handler for InventoryHandler {
    type Message = InventoryCommand;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<InventoryCommand>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            InventoryCommand::ReserveStock(cmd) => self.reserve(tx, cmd).await,
            InventoryCommand::ReleaseStock(cmd) => self.release(tx, cmd).await,
        }
    }

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<InventoryCommand>],
    ) -> Result<(), HandlerError> {
        let mut reserving = Vec::new();
        let mut releasing = Vec::new();
        for msg in msgs {
            match &msg.message {
                InventoryCommand::ReserveStock(cmd) => {
                    reserving.extend(cmd.lines.iter().map(|l| l.sku.as_str()));
                }
                InventoryCommand::ReleaseStock(cmd) => {
                    releasing.push(*cmd.meta.order_id.as_uuid());
                }
            }
        }
        stock::lock_for_batch(tx, &reserving, &releasing)
            .await
            .map_err(handler_error)
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
