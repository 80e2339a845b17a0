//! Use cases of the order service, independent of HTTP and Kafka: place an order (event +
//! outbox + idempotency key in one transaction), read it (fold, optionally as of a time),
//! list through the read model with read-your-writes, and the Approve/Reject commands.

use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_contracts::ids::{CustomerId, MessageId, OrderId};
use saga_contracts::{Metadata, Money};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::domain::{DomainError, Order, OrderEvent, OrderStatus, RecordedEvent};
use crate::messages::{self, Publisher};
use crate::placement::{self, FieldError, PlaceOrderRequest};
use crate::projection::{self, OrderSummary, Projector};
use crate::snapshot::{self, FoldError};
use crate::store::{self, KeyClaim, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid order")]
    Invalid(Vec<FieldError>),
    #[error("the Idempotency-Key was already used with a different request body")]
    KeyReused,
    #[error("consistency token {0} was not issued by this service")]
    UnknownToken(i64),
    #[error("the read model did not reach consistency token {0} in time")]
    NotCaughtUp(i64),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing through the outbox failed: {0}")]
    Publish(#[from] messages::PublishError),
}

impl From<FoldError> for ServiceError {
    fn from(e: FoldError) -> Self {
        match e {
            FoldError::Store(e) => ServiceError::Store(e),
            FoldError::Domain(e) => ServiceError::Domain(e),
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Store(StoreError::Database(e))
    }
}

/// The 202 body of `POST /orders`; also what an Idempotency-Key replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlacedOrder {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub version: i32,
    /// Global sequence of the OrderPlaced event; pass it to `GET /orders?customer_id=` to
    /// read your own write from the read model.
    #[schema(example = "42")]
    pub consistency_token: String,
    pub total_minor: i64,
    pub currency: String,
}

#[derive(Clone)]
pub struct Orders {
    pool: PgPool,
    publisher: Publisher,
    projector: Projector,
    read_your_writes_timeout: Duration,
    streams: crate::live::StreamSlots,
    key_ttl: Duration,
    snapshot_every: u32,
}

/// How long an Idempotency-Key is remembered unless configured otherwise (24 h, as payment
/// APIs do).
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Open `GET /orders/{id}/stream` connections per instance unless configured.
pub const DEFAULT_MAX_STREAMS: usize = 1_000;

impl Orders {
    pub fn new(
        pool: PgPool,
        publisher: Publisher,
        projector: Projector,
        read_your_writes_timeout: Duration,
    ) -> Orders {
        Orders {
            pool,
            publisher,
            projector,
            read_your_writes_timeout,
            streams: crate::live::StreamSlots::new(DEFAULT_MAX_STREAMS),
            key_ttl: DEFAULT_KEY_TTL,
            snapshot_every: snapshot::DEFAULT_SNAPSHOT_EVERY,
        }
    }

    /// A snapshot every `every` events (`order.snapshot_every`; 0: none).
    pub fn with_snapshot_every(mut self, every: u32) -> Orders {
        self.snapshot_every = every;
        self
    }

    /// How long an Idempotency-Key is remembered (`order.idempotency_key_ttl_secs`).
    pub fn with_key_ttl(mut self, ttl: Duration) -> Orders {
        self.key_ttl = ttl;
        self
    }

    pub fn key_ttl(&self) -> Duration {
        self.key_ttl
    }

    /// Bounds the open order streams at `max`.
    pub fn with_stream_limit(mut self, max: usize) -> Orders {
        self.streams = crate::live::StreamSlots::new(max);
        self
    }

    pub fn streams(&self) -> &crate::live::StreamSlots {
        &self.streams
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// The current order and the `global_seq` of its last event (its consistency token).
    pub async fn current(&self, order_id: OrderId) -> Result<Option<(Order, i64)>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let folded = snapshot::fold(&mut conn, order_id, None, self.snapshot_every).await?;
        Ok(folded.order.zip(folded.last_seq))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Returns the placed order and whether it was replayed from an Idempotency-Key.
    pub async fn place(
        &self,
        request: &PlaceOrderRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(PlacedOrder, bool), ServiceError> {
        let valid = request.validate().map_err(ServiceError::Invalid)?;
        let order_id = OrderId::new();
        tracing::Span::current().record("order_id", tracing::field::display(order_id));
        let mut tx = self.pool.begin().await?;

        if let Some(key) = idempotency_key {
            // The typed request re-serialised: insensitive to whitespace and key order.
            let hash = Sha256::digest(serde_json::to_vec(request).unwrap_or_default()).to_vec();
            if let KeyClaim::Existing {
                request_hash,
                response,
            } = store::claim_key(&mut tx, key, &hash, order_id, self.key_ttl).await?
            {
                tx.rollback().await?;
                if request_hash != hash {
                    return Err(ServiceError::KeyReused);
                }
                let placed: PlacedOrder = serde_json::from_value(response)
                    .map_err(|e| StoreError::Corrupt(format!("idempotency response: {e}")))?;
                tracing::Span::current()
                    .record("order_id", tracing::field::display(placed.order_id));
                return Ok((placed, true));
            }
        }

        let skus: Vec<_> = valid.items.iter().map(|(sku, _)| sku).collect();
        let prices = store::prices_for(&mut tx, &skus).await?;
        let (lines, total) = placement::price(&valid, &prices).map_err(ServiceError::Invalid)?;
        let event = OrderEvent::OrderPlaced {
            customer_id: valid.customer_id.clone(),
            lines,
            total,
            shipping_address: valid.shipping_address.clone(),
        };
        let meta = Metadata::first(order_id);
        let seq = store::append_event(&mut tx, order_id, 1, &event, &meta_json(&meta)).await?;
        self.publisher.publish(&mut tx, &event, meta).await?;

        let placed = PlacedOrder {
            order_id,
            status: OrderStatus::Pending,
            version: 1,
            consistency_token: seq.to_string(),
            total_minor: total.amount_minor,
            currency: total.currency.to_string(),
        };
        if let Some(key) = idempotency_key {
            let body = serde_json::to_value(&placed).unwrap_or_default();
            store::store_key_response(&mut tx, key, &body).await?;
        }
        tx.commit().await?;
        self.projector.nudge();
        tracing::info!(total = %total, "order placed");
        Ok((placed, false))
    }

    /// The order folded from its events; with `as_of`, as it was at that instant.
    pub async fn get(
        &self,
        order_id: OrderId,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<Order>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        Ok(
            snapshot::fold(&mut conn, order_id, as_of, self.snapshot_every)
                .await?
                .order,
        )
    }

    pub async fn history(&self, order_id: OrderId) -> Result<Vec<RecordedEvent>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::load_events(&mut conn, order_id, None).await?)
    }

    /// A page from the read model. With a consistency token, first wait (bounded) until
    /// the projection has applied that event.
    pub async fn list(
        &self,
        customer_id: &CustomerId,
        after: Option<OrderId>,
        limit: i64,
        token: Option<i64>,
    ) -> Result<(Vec<OrderSummary>, bool), ServiceError> {
        if let Some(token) = token {
            self.wait_for(token).await?;
        }
        let mut conn = self.pool.acquire().await?;
        Ok(projection::list_by_customer(&mut conn, customer_id, after, limit).await?)
    }

    /// Orders in `status` placed longer than `older_than` ago, oldest first (e.g. the
    /// PENDING orders whose saga never started). With a consistency token as [`Orders::list`].
    pub async fn list_by_status(
        &self,
        status: crate::domain::OrderStatus,
        older_than: Option<Duration>,
        customer_id: Option<&CustomerId>,
        after: Option<OrderId>,
        limit: i64,
        token: Option<i64>,
    ) -> Result<(Vec<OrderSummary>, bool), ServiceError> {
        if let Some(token) = token {
            self.wait_for(token).await?;
        }
        let mut conn = self.pool.acquire().await?;
        Ok(
            projection::list_by_status(&mut conn, status, older_than, customer_id, after, limit)
                .await?,
        )
    }

    async fn wait_for(&self, token: i64) -> Result<(), ServiceError> {
        let deadline = tokio::time::Instant::now() + self.read_your_writes_timeout;
        let mut progress = self.projector.progress();
        loop {
            let reached = {
                let mut conn = self.pool.acquire().await?;
                projection::has_reached(&mut conn, token).await?
            };
            match reached {
                None => return Err(ServiceError::UnknownToken(token)),
                Some(true) => return Ok(()),
                Some(false) => {}
            }
            self.projector.nudge();
            // Woken by this instance's projector; the short timeout covers a projector
            // in another instance having done the work.
            let wake = tokio::time::timeout(Duration::from_millis(50), progress.changed());
            if tokio::time::timeout_at(deadline, wake).await.is_err() {
                return Err(ServiceError::NotCaughtUp(token));
            }
        }
    }

    /// Rebuild the read model from the event log.
    pub async fn rebuild_read_model(&self) -> Result<usize, ServiceError> {
        Ok(projection::rebuild(&self.pool).await?)
    }

    /// ApproveOrder / RejectOrder inside the consumer's transaction. Appends and publishes
    /// at most one event; a repeated command is a no-op, a contradicting one is refused.
    pub async fn decide(
        &self,
        tx: &mut saga_outbox::Tx<'_>,
        order_id: OrderId,
        command: Command<'_>,
        cause: &Metadata,
    ) -> Result<Decision, ServiceError> {
        let folded = snapshot::fold(tx, order_id, None, self.snapshot_every).await?;
        let Some(order) = folded.order else {
            return Ok(Decision::UnknownOrder);
        };
        let event = match command {
            Command::Approve => order.approve(),
            Command::Reject { reason } => order.reject(reason),
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(Decision::AlreadyDone),
            Err(refused) => return Ok(Decision::Refused(refused)),
        };
        let meta = Metadata::caused_by(cause);
        let version = order.version + 1;
        store::append_event(tx, order_id, version, &event, &meta_json(&meta)).await?;
        if snapshot::due_at(version, self.snapshot_every) {
            // The fold passes `version` and stores the snapshot there, in this transaction.
            snapshot::fold(tx, order_id, None, self.snapshot_every).await?;
        }
        self.publisher.publish(tx, &event, meta).await?;
        Ok(Decision::Applied(event))
    }

    pub async fn set_price(
        &self,
        sku: &saga_contracts::ids::Sku,
        price: &Money,
    ) -> Result<(), ServiceError> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::upsert_price(&mut conn, sku, price).await?)
    }

    pub async fn catalog(&self) -> Result<Vec<(saga_contracts::ids::Sku, Money)>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::list_catalog(&mut conn).await?)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Command<'a> {
    Approve,
    Reject { reason: &'a str },
}

#[derive(Debug)]
pub enum Decision {
    Applied(OrderEvent),
    AlreadyDone,
    Refused(DomainError),
    UnknownOrder,
}

/// What the event store keeps of a message's metadata, for audit and for tracing a
/// stored event back to the command that caused it.
fn meta_json(meta: &Metadata) -> serde_json::Value {
    serde_json::json!({
        "message_id": meta.message_id.to_string(),
        "correlation_id": meta.correlation_id.to_string(),
        "causation_id": meta.causation_id.map(|id: MessageId| id.to_string()),
        "saga_id": meta.saga_id.map(|id| id.to_string()),
    })
}
