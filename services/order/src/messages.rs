//! Domain events -> Avro contract messages on `order.events`, enqueued through the
//! transactional outbox in the caller's transaction.

use saga_contracts::Metadata;
use sqlx::PgConnection;

use crate::domain::OrderEvent;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("outbox: {0}")]
    Outbox(String),
}

#[derive(Clone, Default)]
pub struct Publisher {}

impl Publisher {
    pub async fn publish(
        &self,
        _tx: &mut PgConnection,
        _event: &OrderEvent,
        _meta: Metadata,
    ) -> Result<(), PublishError> {
        // TODO(outbox): wire saga_outbox::Outbox::send once the crate lands.
        Ok(())
    }
}
