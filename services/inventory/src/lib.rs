//! inventory-service: stock per SKU and all-or-nothing reservations for the order saga.
//!
//! [`stock`] holds the rules, [`handler`] answers `inventory.commands` on `inventory.events`,
//! [`http`] is the admin API. [`App`] wires them to Postgres, Kafka and the schema registry.

pub mod handler;
pub mod http;
pub mod stock;

use std::net::SocketAddr;

use saga_consumer::{Consumer, ConsumerConfig};
use saga_contracts::Codec;
use saga_kafka::KafkaConfig;
use saga_outbox::{Outbox, Relay, RelayConfig};
use saga_service_kit::app::{Components, RegistryConfig, TaskError, Tasks};
use saga_service_kit::config::{DatabaseConfig, HttpConfig};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::handler::InventoryHandler;

pub const SERVICE_NAME: &str = "inventory-service";

/// This service's tables (the outbox's and inbox's come from their crates).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    #[serde(default = "default_consumer")]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    /// Which parts run (tests switch the relay off and drain the outbox themselves).
    #[serde(default)]
    pub components: Components,
}

fn default_consumer() -> ConsumerConfig {
    ConsumerConfig::new(SERVICE_NAME)
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database")]
    Db(#[from] saga_service_kit::DbError),
    #[error("schema registry")]
    Registry(#[from] saga_contracts::RegistryError),
    #[error("http listener")]
    Http(#[from] std::io::Error),
    #[error("kafka consumer")]
    Consumer(#[from] saga_consumer::ConsumerError),
    #[error("outbox relay")]
    Relay(#[from] saga_outbox::OutboxError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
}

/// The running service's parts, built and ready; [`App::run`] starts them.
pub struct App {
    pool: PgPool,
    listener: TcpListener,
    local_addr: SocketAddr,
    consumer: Option<Consumer<InventoryHandler>>,
    relay: Option<Relay>,
    components: Components,
}

impl App {
    /// Connects, migrates, registers the schemas and binds the listener. A schema the registry
    /// refuses fails the build: better not to start than to publish what nobody can read.
    pub async fn build(config: Config) -> Result<App, AppError> {
        let pool = saga_service_kit::db::connect(&config.database).await?;
        saga_service_kit::db::migrate(
            &pool,
            &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR, &MIGRATOR],
        )
        .await?;
        let codec = Codec::new(&config.registry.url);
        codec.register_all().await?;

        let consumer = if config.components.consumer {
            let handler = InventoryHandler::new(Outbox::new(codec.clone()));
            Some(Consumer::new(
                &config.kafka,
                config.consumer.clone(),
                pool.clone(),
                codec.clone(),
                handler,
            )?)
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
        let listener = saga_service_kit::http::bind(&config.http).await?;
        let local_addr = listener.local_addr()?;
        Ok(App {
            pool,
            listener,
            local_addr,
            consumer,
            relay,
            components: config.components,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the HTTP server, the consumer and the relay until `shutdown` is cancelled or one
    /// of them fails (which cancels the others).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = http::router(self.pool.clone())
            .merge(saga_service_kit::http::health_router(vec![(
                "database",
                saga_service_kit::http::db_check(self.pool.clone()),
            )]))
            .merge(saga_service_kit::http::metrics_router());
        let mut tasks = Tasks::new(shutdown);
        let token = tasks.token();
        if self.components.http {
            let serve = saga_service_kit::http::serve(self.listener, router, token.clone());
            tasks.spawn("http", serve);
        }
        if let Some(consumer) = self.consumer {
            tasks.spawn("consumer", consumer.run(token.clone()));
        }
        if let Some(relay) = self.relay {
            tasks.spawn("relay", relay.run(token.clone()));
        }
        Ok(tasks.join().await?)
    }
}
