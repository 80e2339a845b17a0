//! Domain events -> Avro contract messages on `order.events`, enqueued through the
//! transactional outbox in the caller's transaction (the event row and the message commit
//! together or not at all).

use saga_contracts::{Metadata, OrderApproved, OrderCommandRefused, OrderPlaced, OrderRejected};
use saga_outbox::{Enqueue, Outbox, OutboxError};

use crate::domain::OrderEvent;

pub type PublishError = OutboxError;

#[derive(Clone)]
pub struct Publisher {
    outbox: Outbox,
}

impl Publisher {
    pub fn new(outbox: Outbox) -> Publisher {
        Publisher { outbox }
    }

    pub async fn publish<E: Enqueue>(
        &self,
        tx: &mut E,
        event: &OrderEvent,
        meta: Metadata,
    ) -> Result<(), PublishError> {
        match event {
            OrderEvent::OrderPlaced {
                customer_id,
                lines,
                total,
                shipping_address,
            } => {
                let msg = OrderPlaced {
                    meta,
                    customer_id: customer_id.clone(),
                    lines: lines.clone(),
                    total: *total,
                    shipping_address: shipping_address.clone(),
                };
                self.outbox.send(tx, &msg).await
            }
            OrderEvent::OrderApproved {} => self.outbox.send(tx, &OrderApproved { meta }).await,
            OrderEvent::OrderRejected { reason } => {
                let msg = OrderRejected {
                    meta,
                    reason: reason.clone(),
                };
                self.outbox.send(tx, &msg).await
            }
        }
    }

    /// The reply to a command the order refuses (not a domain event: nothing is stored).
    pub async fn refuse<E: Enqueue>(
        &self,
        tx: &mut E,
        command: &str,
        reason: String,
        meta: Metadata,
    ) -> Result<(), PublishError> {
        let msg = OrderCommandRefused {
            meta,
            command: command.to_owned(),
            reason,
        };
        self.outbox.send(tx, &msg).await
    }
}
