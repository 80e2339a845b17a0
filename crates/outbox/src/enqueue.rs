//! Writing messages into the outbox within the caller's transaction.

use saga_contracts::{Codec, Message};
use saga_kafka::headers::{self, HeaderMap};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::OutboxError;

/// A message ready for the outbox table: already encoded, with its routing and headers.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub message_id: Uuid,
    pub topic: String,
    pub key: String,
    pub message_type: String,
    pub payload: Vec<u8>,
    pub headers: HeaderMap,
}

impl OutboxMessage {
    /// Insert into the outbox within `tx`. Callers that emit several messages for one key
    /// across transactions must hold that key's aggregate row lock in each (they do: every
    /// service updates the order's/saga's row in the same transaction), which is what makes
    /// `id` order equal commit order per key.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), OutboxError> {
        let headers = serde_json::to_value(&self.headers).unwrap_or_default();
        sqlx::query(
            "INSERT INTO outbox (message_id, topic, message_key, message_type, payload, headers)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.message_id)
        .bind(&self.topic)
        .bind(&self.key)
        .bind(&self.message_type)
        .bind(&self.payload)
        .bind(headers)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Encodes contract messages and enqueues them. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    codec: Codec,
}

impl Outbox {
    pub fn new(codec: Codec) -> Self {
        Self { codec }
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Encode `msg` and enqueue it within `tx`: key = `order_id`, topic = the type's topic,
    /// the current trace context and the message id/type/correlation id in headers.
    ///
    /// Encoding happens here, not in the relay, so a schema the registry refuses fails the
    /// business transaction (visible, retried) instead of wedging the relay later.
    pub async fn send<M: Message>(
        &self,
        tx: &mut PgConnection,
        msg: &M,
    ) -> Result<(), OutboxError> {
        let payload = self
            .codec
            .encode(msg)
            .await
            .map_err(|source| OutboxError::Encode {
                message_type: M::TYPE_NAME,
                source,
            })?;
        Self::message(msg, payload).insert(tx).await
    }

    /// The outbox row for `msg` with an already encoded payload.
    pub fn message<M: Message>(msg: &M, payload: Vec<u8>) -> OutboxMessage {
        let meta = msg.meta();
        let mut headers = HeaderMap::new();
        headers::inject_current_trace(&mut headers);
        headers.insert(headers::MESSAGE_ID.into(), meta.message_id.to_string());
        headers.insert(headers::MESSAGE_TYPE.into(), M::TYPE_NAME.into());
        headers.insert(
            headers::CORRELATION_ID.into(),
            meta.correlation_id.to_string(),
        );
        OutboxMessage {
            message_id: *meta.message_id.as_uuid(),
            topic: M::TOPIC.to_owned(),
            key: meta.order_id.to_string(),
            message_type: M::TYPE_NAME.to_owned(),
            payload,
            headers,
        }
    }
}
