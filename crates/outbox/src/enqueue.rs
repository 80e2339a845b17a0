//! Writing messages into the outbox within the caller's transaction.

use std::ops::{Deref, DerefMut};

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

/// Where [`Outbox::send`] puts a message: a connection inside a transaction inserts the row at
/// once; a [`Tx`] may hold it back and write all of a transaction's messages in one
/// statement just before the commit.
pub trait Enqueue: Send {
    fn enqueue(
        &mut self,
        msg: OutboxMessage,
    ) -> impl std::future::Future<Output = Result<(), OutboxError>> + Send;
}

impl Enqueue for PgConnection {
    async fn enqueue(&mut self, msg: OutboxMessage) -> Result<(), OutboxError> {
        msg.insert(self).await
    }
}

impl Enqueue for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn enqueue(&mut self, msg: OutboxMessage) -> Result<(), OutboxError> {
        msg.insert(self).await
    }
}

/// A transaction as the consumer runtime hands it to a handler: the connection (through
/// `Deref`, so it goes wherever a `&mut PgConnection` does) plus the messages the handler
/// sent, which [`Tx::flush`] writes with one multi-row insert before the runtime commits.
///
/// Why: a consumer batch of 25 messages that each send a reply paid 25 single-row inserts,
/// one round trip each, and round trips (not commits) are what a saga costs on a small
/// machine. Order is unchanged: the rows take their ids in send order, and per key the
/// aggregate row lock is held until the commit, as with immediate inserts.
///
/// Staged rows are visible to nobody (not even later statements of the same transaction)
/// until flushed; nothing in the services reads its own outbox rows. [`Tx::direct`] inserts
/// at once instead, for paths that write one message per transaction (HTTP, timers).
pub struct Tx<'c> {
    conn: &'c mut PgConnection,
    /// `None`: direct.
    staged: Option<Vec<OutboxMessage>>,
    /// What a handler keeps for the rest of the transaction, by type (see [`Tx::keep`]).
    kept: Vec<Box<dyn std::any::Any + Send>>,
}

impl<'c> Tx<'c> {
    /// Sent messages wait for [`Tx::flush`]: dropping the `Tx` unflushed loses them, so only
    /// the code that commits the transaction creates one (the consumer runtime).
    pub fn staged(conn: &'c mut PgConnection) -> Tx<'c> {
        Tx {
            conn,
            staged: Some(Vec::new()),
            kept: Vec::new(),
        }
    }

    /// Sent messages are inserted at once, as [`Enqueue`] for a plain connection does.
    pub fn direct(conn: &'c mut PgConnection) -> Tx<'c> {
        Tx {
            conn,
            staged: None,
            kept: Vec::new(),
        }
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// Keep `value` for the rest of the transaction (one value per type; a second replaces the
    /// first). What for: rows a handler's `lock_batch` locked and read for the whole batch,
    /// which `handle` then takes instead of reading each again.
    pub fn keep<T: Send + 'static>(&mut self, value: T) {
        self.kept.retain(|k| !k.is::<T>());
        self.kept.push(Box::new(value));
    }

    /// The value of type `T` kept in this transaction, if any.
    pub fn kept<T: Send + 'static>(&mut self) -> Option<&mut T> {
        self.kept.iter_mut().find_map(|k| k.downcast_mut::<T>())
    }

    /// Messages sent and not yet written.
    pub fn pending(&self) -> usize {
        self.staged.as_ref().map_or(0, Vec::len)
    }

    /// Write the staged messages (one statement, in send order). Returns how many.
    pub async fn flush(&mut self) -> Result<usize, OutboxError> {
        let rows = match self.staged.as_mut() {
            Some(rows) if !rows.is_empty() => std::mem::take(rows),
            _ => return Ok(0),
        };
        let headers: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::to_value(&r.headers).unwrap_or_default())
            .collect();
        sqlx::query(
            "INSERT INTO outbox (message_id, topic, message_key, message_type, payload, headers)
             SELECT m, t, k, ty, p, h
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::jsonb[])
                 WITH ORDINALITY AS u(m, t, k, ty, p, h, ord)
             ORDER BY ord",
        )
        .bind(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.message_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(headers)
        .execute(&mut *self.conn)
        .await?;
        Ok(rows.len())
    }
}

impl Enqueue for Tx<'_> {
    async fn enqueue(&mut self, msg: OutboxMessage) -> Result<(), OutboxError> {
        match self.staged.as_mut() {
            Some(rows) => {
                rows.push(msg);
                Ok(())
            }
            None => msg.insert(self.conn).await,
        }
    }
}

impl Deref for Tx<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
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
    pub async fn send<M: Message, E: Enqueue + ?Sized>(
        &self,
        tx: &mut E,
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
        tx.enqueue(Self::message(msg, payload)).await
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
