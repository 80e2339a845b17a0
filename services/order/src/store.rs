//! Postgres access for the write side: the event store (`order_events`), the catalog and
//! the idempotency keys. Every function takes a connection so callers choose the
//! transaction; the read model lives in `projection`.

use chrono::{DateTime, Utc};
use saga_contracts::ids::{OrderId, Sku};
use saga_contracts::{Currency, Money};
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::domain::{OrderEvent, RecordedEvent};
use crate::placement::PriceList;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended this version first (optimistic concurrency).
    #[error("order {order_id} was modified concurrently (version {version} already exists)")]
    VersionConflict { order_id: OrderId, version: i32 },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    fn corrupt(e: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Events of one order ordered by version; with `as_of`, only those recorded at or
/// before that instant (a temporal query: the order as it was then).
pub async fn load_events(
    conn: &mut PgConnection,
    order_id: OrderId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    load_events_after(conn, order_id, 0, as_of).await
}

/// As [`load_events`], only the events after `after_version` (the tail behind a snapshot).
pub async fn load_events_after(
    conn: &mut PgConnection,
    order_id: OrderId,
    after_version: i32,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, type, schema_version, payload, recorded_at, global_seq FROM order_events \
         WHERE order_id = $1 AND version > $3 AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
         ORDER BY version",
    )
    .bind(Uuid::from(order_id))
    .bind(as_of)
    .bind(after_version)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RecordedEvent {
                order_id,
                version: row.try_get("version")?,
                global_seq: row.try_get("global_seq")?,
                recorded_at: row.try_get("recorded_at")?,
                event: decode_event(
                    row.try_get("type")?,
                    row.try_get("schema_version")?,
                    row.try_get("payload")?,
                )?,
            })
        })
        .collect()
}

/// A stored event in the current shape: the payload raised from its `schema_version` by
/// [`crate::upcast`], then decoded.
pub(crate) fn decode_event(
    type_name: String,
    schema_version: i32,
    payload: serde_json::Value,
) -> Result<OrderEvent, StoreError> {
    let payload =
        crate::upcast::upcast(&type_name, schema_version, payload).map_err(StoreError::corrupt)?;
    serde_json::from_value(serde_json::json!({ "type": type_name, "data": payload }))
        .map_err(StoreError::corrupt)
}

/// Append `event` as `version` of the order. Returns its global sequence (the
/// consistency token). A unique violation on the primary key means another writer won.
pub async fn append_event(
    conn: &mut PgConnection,
    order_id: OrderId,
    version: i32,
    event: &OrderEvent,
    metadata: &serde_json::Value,
) -> Result<i64, StoreError> {
    let mut tagged = serde_json::to_value(event).map_err(StoreError::corrupt)?;
    let payload = tagged
        .get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| serde_json::json!({}));
    let result = sqlx::query(
        "INSERT INTO order_events (order_id, version, type, schema_version, payload, metadata) \
         VALUES ($1, $2, $3, $6, $4, $5) RETURNING global_seq",
    )
    .bind(Uuid::from(order_id))
    .bind(version)
    .bind(event.type_name())
    .bind(payload)
    .bind(metadata)
    .bind(crate::upcast::current_version(event.type_name()))
    .fetch_one(conn)
    .await;
    match result {
        Ok(row) => Ok(row.try_get("global_seq")?),
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("order_events_pkey") => {
            Err(StoreError::VersionConflict { order_id, version })
        }
        Err(e) => Err(e.into()),
    }
}

/// Unit prices for the given SKUs (those not in the catalog are absent).
pub async fn prices_for(conn: &mut PgConnection, skus: &[&Sku]) -> Result<PriceList, StoreError> {
    let names: Vec<String> = skus.iter().map(|s| s.to_string()).collect();
    let rows =
        sqlx::query("SELECT sku, unit_price_minor, currency FROM catalog WHERE sku = ANY($1)")
            .bind(&names)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| {
            let (sku, price) = catalog_row(row)?;
            Ok((sku.to_string(), price))
        })
        .collect()
}

fn catalog_row(row: &sqlx::postgres::PgRow) -> Result<(Sku, Money), StoreError> {
    let sku: String = row.try_get("sku")?;
    let currency: String = row.try_get("currency")?;
    Ok((
        sku.parse().map_err(StoreError::corrupt)?,
        Money {
            amount_minor: row.try_get("unit_price_minor")?,
            currency: currency.parse::<Currency>().map_err(StoreError::corrupt)?,
        },
    ))
}

pub async fn upsert_price(
    conn: &mut PgConnection,
    sku: &Sku,
    price: &Money,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO catalog (sku, unit_price_minor, currency) VALUES ($1, $2, $3) \
         ON CONFLICT (sku) DO UPDATE SET unit_price_minor = EXCLUDED.unit_price_minor, \
         currency = EXCLUDED.currency, updated_at = now()",
    )
    .bind(sku.to_string())
    .bind(price.amount_minor)
    .bind(price.currency.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list_catalog(conn: &mut PgConnection) -> Result<Vec<(Sku, Money)>, StoreError> {
    let rows = sqlx::query("SELECT sku, unit_price_minor, currency FROM catalog ORDER BY sku")
        .fetch_all(conn)
        .await?;
    rows.iter().map(catalog_row).collect()
}

/// Outcome of claiming an Idempotency-Key inside the order's transaction.
pub enum KeyClaim {
    /// The key is ours: create the order, then `store_key_response`.
    Claimed,
    /// Another request owns the key (its transaction committed before this returned).
    Existing {
        request_hash: Vec<u8>,
        response: serde_json::Value,
    },
}

/// `INSERT .. ON CONFLICT DO NOTHING`: when a concurrent transaction holds the same key,
/// Postgres makes this wait for it, so exactly one request creates the order. A key older
/// than `ttl` has expired (as at payment APIs): it is removed first and claimed anew, whether
/// or not the scheduled purge got to it yet.
pub async fn claim_key(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &[u8],
    order_id: OrderId,
    ttl: Duration,
) -> Result<KeyClaim, StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE key = $1 AND created_at < now() - make_interval(secs => $2)",
    )
    .bind(key)
    .bind(ttl.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, order_id, response) \
         VALUES ($1, $2, $3, '{}'::jsonb) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(request_hash)
    .bind(Uuid::from(order_id))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(KeyClaim::Claimed);
    }
    let row = sqlx::query("SELECT request_hash, response FROM idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_one(conn)
        .await?;
    Ok(KeyClaim::Existing {
        request_hash: row.try_get("request_hash")?,
        response: row.try_get("response")?,
    })
}

/// Deletes idempotency keys older than `ttl`; returns how many.
pub async fn purge_expired_keys(pool: &PgPool, ttl: Duration) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}

/// Runs [`purge_expired_keys`] every `every` until `shutdown`.
pub async fn run_key_expiry(
    pool: PgPool,
    ttl: Duration,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match purge_expired_keys(&pool, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(%error, "idempotency key purge failed; will retry"),
        }
    }
}

pub async fn store_key_response(
    conn: &mut PgConnection,
    key: &str,
    response: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE idempotency_keys SET response = $2 WHERE key = $1")
        .bind(key)
        .bind(response)
        .execute(conn)
        .await?;
    Ok(())
}
