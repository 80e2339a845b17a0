//! order-service: takes orders over HTTP, keeps them as an event-sourced aggregate
//! (`order_events`), projects a CQRS read model (`order_summaries`) for listing, publishes
//! OrderPlaced/OrderApproved/OrderRejected through the transactional outbox, and applies
//! ApproveOrder/RejectOrder commands from the orchestrator. See docs/order-service.md.
//!
//! [`App`] wires it through [`saga_runtime::Runtime`] like every other service: the
//! `order.commands` consumer and the projector are runtime parts under one token.

pub mod commands;
pub mod domain;
pub mod http;
pub mod live;
pub mod messages;
pub mod placement;
pub mod projection;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod upcast;

use std::net::SocketAddr;
use std::time::Duration;

use saga_runtime::{Runtime, RuntimeConfig, RuntimeError, ServiceConfig};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::messages::Publisher;
use crate::projection::Projector;
use crate::service::Orders;

pub const SERVICE_NAME: &str = "order-service";

/// This service's tables (the outbox's and inbox's come from their crates).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The shared sections (`consumer` is the consumer of `order.commands`, its group
/// defaulting to [`SERVICE_NAME`]) plus `order`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub order: OrderSettings,
}

impl ServiceConfig for Config {
    const NAME: &'static str = SERVICE_NAME;
    const SECTIONS: &'static [&'static str] = &["order"];
    fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }
    fn runtime_mut(&mut self) -> &mut RuntimeConfig {
        &mut self.runtime
    }
}

/// The service's own section (`[order]`, `APP_ORDER__...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// Run the read-model projector (tests switch it off and call `projection::catch_up`).
    pub run_projector: bool,
    /// How long `GET /orders?customer_id=..` with a consistency token waits for the read
    /// model before answering 503.
    pub read_your_writes_timeout_ms: u64,
    /// Safety-net poll of the projector (it is normally woken by NOTIFY).
    pub projector_poll_ms: u64,
    /// Under load, at most one projector pass per this many milliseconds (0: no pacing).
    pub projector_linger_ms: u64,
    /// Open `GET /orders/{id}/stream` connections this instance serves at once; beyond
    /// it the answer is 503 problem+json.
    pub max_streams: usize,
    /// How long an Idempotency-Key is remembered; older keys are purged and may be reused.
    pub idempotency_key_ttl_secs: u64,
    /// A snapshot of an order is stored every this many events, and folds start from the
    /// latest one; 0 switches snapshots off (docs/order-service.md, "Snapshots").
    pub snapshot_every: u32,
    /// An order still PENDING this long after it was placed counts as stale (gauge
    /// `orders_pending_stale`): its saga never started or never ended. `30s`, `5m`, `1h`.
    #[serde(deserialize_with = "saga_service_kit::duration::deserialize")]
    pub pending_stale_after: Duration,
    /// How often the `orders_pending_stale` gauge is refreshed.
    pub pending_stale_check_ms: u64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            run_projector: true,
            read_your_writes_timeout_ms: 2_000,
            projector_poll_ms: 500,
            projector_linger_ms: projection::DEFAULT_LINGER_MS,
            max_streams: service::DEFAULT_MAX_STREAMS,
            idempotency_key_ttl_secs: service::DEFAULT_KEY_TTL.as_secs(),
            snapshot_every: snapshot::DEFAULT_SNAPSHOT_EVERY,
            pending_stale_after: Duration::from_secs(300),
            pending_stale_check_ms: 15_000,
        }
    }
}

/// Keep `orders_pending_stale` (orders PENDING longer than `after`) up to date from the
/// read model, so it is right across restarts and instances. A failed read is logged and
/// retried next round.
async fn run_pending_stale_gauge(
    pool: PgPool,
    after: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match projection::count_pending_older_than(&pool, after).await {
            Ok(n) => metrics::gauge!("orders_pending_stale").set(n as f64),
            Err(error) => tracing::warn!(%error, "counting stale pending orders failed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The running service's parts, built and ready; [`App::run`] starts them.
pub struct App {
    runtime: Runtime,
    orders: Orders,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let mut runtime = Runtime::build(SERVICE_NAME, config.runtime, &MIGRATOR).await?;
        let projector = Projector::new(
            runtime.pool().clone(),
            Duration::from_millis(config.order.projector_poll_ms),
        )
        .with_linger(Duration::from_millis(config.order.projector_linger_ms));
        let orders = Orders::new(
            runtime.pool().clone(),
            Publisher::new(runtime.outbox()),
            projector.clone(),
            Duration::from_millis(config.order.read_your_writes_timeout_ms),
        )
        .with_stream_limit(config.order.max_streams)
        .with_snapshot_every(config.order.snapshot_every)
        .with_key_ttl(Duration::from_secs(
            config.order.idempotency_key_ttl_secs.max(1),
        ));
        runtime.add_consumer(
            "commands consumer",
            runtime.consumer_config(),
            commands::OrderCommands(orders.clone(), Publisher::new(runtime.outbox())),
        )?;
        // Expired keys are also skipped at claim time; the purge bounds the table.
        let (pool, ttl) = (runtime.pool().clone(), orders.key_ttl());
        runtime.add_task("idempotency-key-expiry", move |token| async move {
            store::run_key_expiry(pool, ttl, Duration::from_secs(600), token).await;
            Ok::<(), std::convert::Infallible>(())
        });
        let (pool, after) = (runtime.pool().clone(), config.order.pending_stale_after);
        let every = Duration::from_millis(config.order.pending_stale_check_ms.max(100));
        runtime.add_task("pending-stale-gauge", move |token| async move {
            run_pending_stale_gauge(pool, after, every, token).await;
            Ok::<(), std::convert::Infallible>(())
        });
        if config.order.run_projector {
            runtime.add_task("projector", move |token| projector.run(token));
        }
        Ok(App { runtime, orders })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    pub fn pool(&self) -> &PgPool {
        self.runtime.pool()
    }

    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// The public API and the admin routes (`http::admin_routes`, where an admin credential
    /// check is layered on).
    pub fn router(&self) -> axum::Router {
        http::router(self.orders.clone())
            .merge(
                self.runtime
                    .admin_auth()
                    .protect(http::admin_routes(self.orders.clone())),
            )
            .fallback(saga_service_kit::problem::not_found)
    }

    /// Runs the HTTP server, the consumer, the projector and the relay until `shutdown` is
    /// cancelled or one of them fails (which cancels the others).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = self.router();
        Ok(self.runtime.run(router, shutdown).await?)
    }
}
