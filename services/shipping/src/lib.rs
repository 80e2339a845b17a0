//! shipping-service: books shipments for the order saga and dispatches them once the order
//! is approved.
//!
//! [`shipments`] holds the rules; [`handler`] answers `shipping.commands` and follows
//! `order.events` (dispatch on OrderApproved), replying on `shipping.events`; [`http`] shows a
//! shipment. [`App`] wires them to Postgres, Kafka and the schema registry.

pub mod handler;
pub mod http;
pub mod shipments;

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

use crate::handler::{CommandHandler, OrderEventHandler};
use crate::shipments::ServedCountries;

pub const SERVICE_NAME: &str = "shipping-service";

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
    /// The consumer of `shipping.commands`.
    #[serde(default = "default_consumer")]
    pub consumer: ConsumerConfig,
    /// The consumer of `order.events`. Unset: the `consumer` settings with the group id
    /// `<consumer.group_id>.order-events` (its own group: it follows another service's topic,
    /// and an inbox namespace of its own).
    #[serde(default)]
    pub order_events_consumer: Option<ConsumerConfig>,
    #[serde(default)]
    pub relay: RelayConfig,
    /// Which parts run (tests switch the relay off and drain the outbox themselves).
    #[serde(default)]
    pub components: Components,
    #[serde(default)]
    pub shipping: ShippingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingConfig {
    /// Destination countries served, ISO 3166-1 alpha-2.
    pub served_countries: Vec<String>,
}

impl Default for ShippingConfig {
    fn default() -> Self {
        Self {
            served_countries: ["DE", "FR", "NL", "GB", "US"].map(String::from).to_vec(),
        }
    }
}

fn default_consumer() -> ConsumerConfig {
    ConsumerConfig::new(SERVICE_NAME)
}

impl Config {
    /// The effective settings of the `order.events` consumer.
    pub fn order_events_consumer(&self) -> ConsumerConfig {
        self.order_events_consumer
            .clone()
            .unwrap_or_else(|| ConsumerConfig {
                group_id: format!("{}.order-events", self.consumer.group_id),
                ..self.consumer.clone()
            })
    }
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
    #[error(
        "invalid configuration: `shipping.served_countries`: {0:?} is not an ISO 3166-1 alpha-2 code"
    )]
    InvalidCountry(String),
    #[error(transparent)]
    Tasks(#[from] TaskError),
}

/// The running service's parts, built and ready; [`App::run`] starts them.
pub struct App {
    pool: PgPool,
    listener: TcpListener,
    local_addr: SocketAddr,
    consumers: Option<(Consumer<CommandHandler>, Consumer<OrderEventHandler>)>,
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

        let served = ServedCountries::new(&config.shipping.served_countries)
            .map_err(AppError::InvalidCountry)?;
        let consumers = if config.components.consumer {
            let outbox = Outbox::new(codec.clone());
            let commands = CommandHandler::new(outbox.clone(), served);
            let commands = Consumer::new(
                &config.kafka,
                config.consumer.clone(),
                pool.clone(),
                codec.clone(),
                commands,
            )?;
            let order_events = Consumer::new(
                &config.kafka,
                config.order_events_consumer(),
                pool.clone(),
                codec.clone(),
                OrderEventHandler::new(outbox),
            )?;
            Some((commands, order_events))
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
            consumers,
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
        if let Some((commands, order_events)) = self.consumers {
            tasks.spawn("commands consumer", commands.run(token.clone()));
            tasks.spawn("order events consumer", order_events.run(token.clone()));
        }
        if let Some(relay) = self.relay {
            tasks.spawn("relay", relay.run(token.clone()));
        }
        Ok(tasks.join().await?)
    }
}
