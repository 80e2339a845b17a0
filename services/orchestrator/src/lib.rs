//! orchestrator-service: runs the order saga.
//!
//! - [`sagas::order_saga`]: the saga as a step table (start here).
//! - [`engine`]: the pure state machine that interprets any step table.
//! - [`runner`]: the engine inside a transaction: saga row lock, transition log, outbox.
//! - [`store`]: the `sagas` and `saga_transitions` tables.
//! - [`http`]: `GET /sagas/{id}` and `GET /sagas?state=`.
//!
//! See docs/saga.md for the states, the retry policy and the API.

pub mod consumers;
pub mod engine;
pub mod http;
pub mod runner;
pub mod sagas;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use saga_consumer::{Consumer, ConsumerConfig, Handler};
use saga_contracts::{Codec, TopicMessage};
use saga_kafka::KafkaConfig;
use saga_outbox::{Outbox, Relay, RelayConfig};
use saga_service_kit::app::{Components, RegistryConfig, Tasks};
use saga_service_kit::config::{DatabaseConfig, HttpConfig};
use saga_service_kit::{DbError, db, http as kit_http};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use runner::{Handled, SagaConfig, SagaError, SagaRunner};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration (`APP_` env with `__` nesting, or a TOML file). Unknown
/// top-level keys are ignored: the stack gives every service the same environment.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    /// Shared by the four consumers; each gets its own group `<group_id>.<topic>` (default
    /// group id: `orchestrator`).
    #[serde(default)]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default)]
    pub components: Components,
    #[serde(default)]
    pub saga: SagaConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
    #[error("schema registration refused: {0}")]
    Registry(#[from] saga_contracts::RegistryError),
    #[error("outbox relay: {0}")]
    Relay(#[from] saga_outbox::OutboxError),
    #[error("consumer: {0}")]
    Consumer(#[from] saga_consumer::ConsumerError),
    #[error(transparent)]
    Task(#[from] saga_service_kit::app::TaskError),
}

pub struct App {
    config: Config,
    pool: PgPool,
    listener: Option<TcpListener>,
    local_addr: Option<SocketAddr>,
    runner: SagaRunner,
    relay: Option<Relay>,
    consumers: Option<Consumers>,
}

/// One consumer per topic the saga reads.
struct Consumers {
    order: Consumer<consumers::OrderEvents>,
    inventory: Consumer<consumers::InventoryEvents>,
    payment: Consumer<consumers::PaymentEvents>,
    shipping: Consumer<consumers::ShippingEvents>,
}

impl Consumers {
    fn new(
        config: &Config,
        pool: &PgPool,
        codec: &Codec,
        runner: &SagaRunner,
    ) -> Result<Self, AppError> {
        fn one<H: Handler>(
            config: &Config,
            pool: &PgPool,
            codec: &Codec,
            handler: H,
        ) -> Result<Consumer<H>, AppError> {
            let mut cfg = config.consumer.clone();
            let group = if cfg.group_id.trim().is_empty() {
                DEFAULT_GROUP
            } else {
                cfg.group_id.as_str()
            };
            // A group per topic: each consumer's offsets and inbox rows stay its own, and no
            // rebalance mixes members with different subscriptions.
            cfg.group_id = format!("{group}.{}", H::Message::TOPIC);
            Ok(Consumer::new(
                &config.kafka,
                cfg,
                pool.clone(),
                codec.clone(),
                handler,
            )?)
        }
        Ok(Consumers {
            order: one(config, pool, codec, consumers::OrderEvents(runner.clone()))?,
            inventory: one(
                config,
                pool,
                codec,
                consumers::InventoryEvents(runner.clone()),
            )?,
            payment: one(
                config,
                pool,
                codec,
                consumers::PaymentEvents(runner.clone()),
            )?,
            shipping: one(
                config,
                pool,
                codec,
                consumers::ShippingEvents(runner.clone()),
            )?,
        })
    }
}

/// Consumer group prefix when `consumer.group_id` is not set.
pub const DEFAULT_GROUP: &str = "orchestrator";

impl App {
    /// Connect, migrate, register the schemas, bind the HTTP port. Nothing runs until
    /// [`App::run`].
    pub async fn build(config: Config) -> Result<App, AppError> {
        let pool = db::connect(&config.database).await?;
        db::migrate(
            &pool,
            &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR, &MIGRATOR],
        )
        .await?;
        let codec = Codec::new(&config.registry.url);
        codec.register_all().await?;
        let runner = SagaRunner::new(Outbox::new(codec.clone()), config.saga.clone());
        let consumers = if config.components.consumer {
            Some(Consumers::new(&config, &pool, &codec, &runner)?)
        } else {
            None
        };
        let relay = if config.components.relay {
            Some(Relay::new(
                pool.clone(),
                &config.kafka,
                config.relay.clone(),
            )?)
        } else {
            None
        };
        let (listener, local_addr) = if config.components.http {
            let l = kit_http::bind(&config.http).await?;
            let addr = l.local_addr()?;
            (Some(l), Some(addr))
        } else {
            (None, None)
        };
        Ok(App {
            config,
            pool,
            listener,
            local_addr,
            runner,
            relay,
            consumers,
        })
    }

    /// The HTTP address (port 0 resolved); `None` when HTTP is switched off.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The saga logic, for tests that feed messages directly and drive retries.
    pub fn runner(&self) -> &SagaRunner {
        &self.runner
    }

    /// Run every enabled part until `shutdown` is cancelled (or one part fails).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let mut tasks = Tasks::new(shutdown);
        if let Some(listener) = self.listener {
            let router = http::router(self.pool.clone())
                .merge(kit_http::health_router(vec![(
                    "database",
                    kit_http::db_check(self.pool.clone()),
                )]))
                .merge(kit_http::metrics_router())
                .fallback(saga_service_kit::problem::not_found);
            tasks.spawn("http", kit_http::serve(listener, router, tasks.token()));
        }
        if let Some(relay) = self.relay {
            tasks.spawn("outbox-relay", relay.run(tasks.token()));
        }
        if let Some(c) = self.consumers {
            tasks.spawn("consumer-order-events", c.order.run(tasks.token()));
            tasks.spawn("consumer-inventory-events", c.inventory.run(tasks.token()));
            tasks.spawn("consumer-payment-events", c.payment.run(tasks.token()));
            tasks.spawn("consumer-shipping-events", c.shipping.run(tasks.token()));
        }
        if self.config.saga.retry_task {
            tasks.spawn(
                "saga-retry",
                retry_loop(self.runner.clone(), self.pool.clone(), tasks.token()),
            );
        }
        tasks.join().await?;
        Ok(())
    }
}

/// Re-send overdue commands and refresh the state gauge, every `retry_interval_ms`. A failed
/// round is logged and retried next tick: the database may be briefly away.
async fn retry_loop(
    runner: SagaRunner,
    pool: PgPool,
    shutdown: CancellationToken,
) -> Result<(), SagaError> {
    let mut tick = tokio::time::interval(Duration::from_millis(
        runner.config().retry_interval_ms.max(10),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = runner.retry_due_once(&pool).await {
            tracing::warn!(error = %e, "saga retry round failed");
        }
        if let Err(e) = runner.refresh_gauge(&pool).await {
            tracing::warn!(error = %e, "saga gauge refresh failed");
        }
    }
}
