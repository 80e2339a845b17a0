//! Consumer of `order.commands` (from the orchestrator): ApproveOrder / RejectOrder become
//! OrderApproved / OrderRejected events, appended and published in the runtime's
//! transaction (with the inbox row that deduplicates redeliveries).

use saga_consumer::{Handler, HandlerError, Incoming, Tx};
use saga_contracts::{OrderCommand, TopicMessage};
use tracing::Instrument;

use crate::messages::Publisher;
use crate::service::{Command, Decision, Orders, ServiceError};
use crate::store::StoreError;

/// The order service and the publisher it answers refused commands with.
pub struct OrderCommands(pub Orders, pub Publisher);

impl Handler for OrderCommands {
    type Message = OrderCommand;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<OrderCommand>,
    ) -> Result<(), HandlerError> {
        let meta = msg.message.meta();
        let order_id = meta.order_id;
        let command = match &msg.message {
            OrderCommand::ApproveOrder(_) => Command::Approve,
            OrderCommand::RejectOrder(cmd) => Command::Reject {
                reason: &cmd.reason,
            },
        };
        let span = tracing::info_span!(
            "order_command",
            order_id = %order_id,
            command = msg.message.type_name(),
            message_id = %meta.message_id,
        );
        let decision = self
            .0
            .decide(tx, order_id, command, meta)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        match decision {
            Ok(Decision::Applied(event)) => {
                tracing::info!(event = event.type_name(), "order updated");
                Ok(())
            }
            Ok(Decision::AlreadyDone) => {
                tracing::info!("command already applied; nothing to do");
                Ok(())
            }
            // Refusing keeps the order's history truthful; the reply lets the saga go on (a
            // refused approve unwinds it, a refused reject opens an incident) instead of
            // waiting for an answer that never comes.
            Ok(Decision::Refused(reason)) => {
                tracing::warn!(%reason, "command refused");
                self.1
                    .refuse(
                        tx,
                        msg.message.type_name(),
                        reason.to_string(),
                        saga_contracts::Metadata::caused_by(meta),
                    )
                    .await
                    .map_err(HandlerError::Outbox)
            }
            Ok(Decision::UnknownOrder) => {
                Err(HandlerError::Permanent(format!("no order {order_id}")))
            }
            Err(ServiceError::Store(StoreError::VersionConflict { .. })) => Err(
                HandlerError::Transient(format!("order {order_id} modified concurrently")),
            ),
            Err(ServiceError::Store(StoreError::Database(e))) => Err(HandlerError::Database(e)),
            Err(ServiceError::Publish(e)) => Err(HandlerError::Outbox(e)),
            Err(other) => Err(HandlerError::Permanent(other.to_string())),
        }
    }
}
