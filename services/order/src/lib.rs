//! order-service: takes orders over HTTP, keeps them as an event-sourced aggregate
//! (`order_events`), projects a CQRS read model (`order_summaries`) for listing, publishes
//! OrderPlaced/OrderApproved/OrderRejected through the transactional outbox, and applies
//! ApproveOrder/RejectOrder commands from the orchestrator. See docs/order-service.md.

pub mod commands;
pub mod domain;
pub mod http;
pub mod messages;
pub mod placement;
pub mod projection;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use saga_consumer::{Consumer, ConsumerConfig, ConsumerError};
use saga_contracts::Codec;
use saga_kafka::KafkaConfig;
use saga_outbox::{Outbox, OutboxError, Relay, RelayConfig};
use saga_service_kit::auth::{AdminAuth, AuthConfig, WeakToken};
use saga_service_kit::config::{DatabaseConfig, HttpConfig};
use saga_service_kit::{DbError, http as kit_http};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::messages::Publisher;
use crate::projection::Projector;
use crate::service::Orders;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Every migration this database needs: the shared outbox and inbox tables, then ours.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    saga_service_kit::db::migrate(
        pool,
        &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR, &MIGRATOR],
    )
    .await
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    /// `group_id` defaults to `order-service`.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub order: OrderSettings,
    /// `auth.admin_token`: the bearer token of prices and the projection rebuild.
    #[serde(default)]
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
}

/// The service's own section (`[order]`, `APP_ORDER__...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    pub run_http: bool,
    pub run_projector: bool,
    /// Consume `order.commands`.
    pub run_consumer: bool,
    /// Publish the outbox to Kafka (tests may switch it off and call `drain_once`).
    pub run_relay: bool,
    /// How long `GET /orders?customer_id=..` with a consistency token waits for the read
    /// model before answering 503.
    pub read_your_writes_timeout_ms: u64,
    /// Safety-net poll of the projector (it is normally woken by NOTIFY).
    pub projector_poll_ms: u64,
    /// How long an Idempotency-Key is remembered; older keys are purged and may be reused.
    pub idempotency_key_ttl_secs: u64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            run_http: true,
            run_projector: true,
            run_consumer: true,
            run_relay: true,
            read_your_writes_timeout_ms: 2_000,
            projector_poll_ms: 500,
            idempotency_key_ttl_secs: service::DEFAULT_KEY_TTL.as_secs(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
    #[error("schema registry refused or could not take our schemas: {0}")]
    Registry(#[from] saga_contracts::RegistryError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Auth(#[from] WeakToken),
}

pub struct App {
    listener: Option<TcpListener>,
    local_addr: Option<SocketAddr>,
    orders: Orders,
    projector: Projector,
    relay: Option<Relay>,
    consumer: Option<Consumer<commands::OrderCommands>>,
    admin: AdminAuth,
    config: Config,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let pool = saga_service_kit::db::connect(&config.database).await?;
        Self::build_with_pool(config, pool).await
    }

    pub async fn build_with_pool(config: Config, pool: PgPool) -> Result<App, AppError> {
        let admin = AdminAuth::new(&config.auth)?;
        migrate(&pool).await?;
        let codec = Codec::new(&config.registry.url);
        // Fail at start, not at the first order, when the registry refuses a schema.
        codec.register_all().await?;
        let relay = if config.order.run_relay {
            Some(Relay::new(
                pool.clone(),
                &config.kafka,
                config.relay.clone(),
            )?)
        } else {
            None
        };
        let projector = Projector::new(
            pool.clone(),
            Duration::from_millis(config.order.projector_poll_ms),
        );
        let orders = Orders::new(
            pool,
            Publisher::new(Outbox::new(codec.clone())),
            projector.clone(),
            Duration::from_millis(config.order.read_your_writes_timeout_ms),
        )
        .with_key_ttl(Duration::from_secs(
            config.order.idempotency_key_ttl_secs.max(1),
        ));
        let consumer = if config.order.run_consumer {
            let mut cfg = config.consumer.clone();
            if cfg.group_id.trim().is_empty() {
                cfg.group_id = "order-service".into();
            }
            Some(Consumer::new(
                &config.kafka,
                cfg,
                orders.pool().clone(),
                codec.clone(),
                commands::OrderCommands(orders.clone()),
            )?)
        } else {
            None
        };
        let (listener, local_addr) = if config.order.run_http {
            let l = kit_http::bind(&config.http).await?;
            let addr = l.local_addr()?;
            (Some(l), Some(addr))
        } else {
            (None, None)
        };
        Ok(App {
            listener,
            local_addr,
            orders,
            projector,
            relay,
            consumer,
            admin,
            config,
        })
    }

    /// The HTTP address (port 0 resolved); `None` when HTTP is switched off.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    pub fn router(&self) -> axum::Router {
        let pool = self.orders.pool().clone();
        http::router(self.orders.clone(), &self.admin)
            .merge(kit_http::health_router(vec![(
                "postgres",
                kit_http::db_check(pool),
            )]))
            .merge(kit_http::metrics_router())
            .fallback(saga_service_kit::problem::not_found)
    }

    /// Runs every enabled part until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = self.router();
        let projector = self.config.order.run_projector.then(|| {
            let token = shutdown.clone();
            tokio::spawn(self.projector.clone().run(token))
        });
        // Expired keys are also skipped at claim time; the purge bounds the table.
        let key_expiry = tokio::spawn(store::run_key_expiry(
            self.orders.pool().clone(),
            self.orders.key_ttl(),
            Duration::from_secs(600),
            shutdown.clone(),
        ));
        let relay = self.relay.map(|relay| {
            let token = shutdown.clone();
            tokio::spawn(async move {
                let result = relay.run(token.clone()).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "outbox relay stopped");
                }
                token.cancel();
                result
            })
        });
        let consumer = self.consumer.map(|consumer| {
            let token = shutdown.clone();
            tokio::spawn(async move {
                let result = consumer.run(token.clone()).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "order.commands consumer stopped");
                }
                token.cancel();
                result
            })
        });
        let served = match self.listener {
            Some(listener) => kit_http::serve(listener, router, shutdown.clone()).await,
            None => {
                shutdown.cancelled().await;
                Ok(())
            }
        };
        // Whatever ended first, stop the rest.
        shutdown.cancel();
        if let Some(p) = projector {
            let _ = p.await;
        }
        let _ = key_expiry.await;
        if let Some(c) = consumer
            && let Ok(result) = c.await
        {
            result?;
        }
        if let Some(r) = relay
            && let Ok(result) = r.await
        {
            result?;
        }
        served.map_err(AppError::from)
    }
}
