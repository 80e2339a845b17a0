//! Consumer of `order.commands` (from the orchestrator): ApproveOrder / RejectOrder become
//! OrderApproved / OrderRejected events, appended and published in the runtime's
//! transaction (with the inbox row that deduplicates redeliveries).

use saga_consumer::{Handler, HandlerError, Incoming};
use saga_contracts::{OrderCommand, TopicMessage};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::service::{Command, Decision, Orders, ServiceError};
use crate::store::StoreError;

pub struct OrderCommands(pub Orders);

impl Handler for OrderCommands {
    type Message = OrderCommand;

    async fn handle(
        &self,
        tx: &mut PgConnection,
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
            // The orchestrator should never send this; refusing keeps the order's history
            // truthful, and the warning makes the saga bug visible.
            Ok(Decision::Refused(reason)) => {
                tracing::warn!(%reason, "command refused");
                Ok(())
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
