//! shipping-service: books shipments for the order saga and dispatches them once the order
//! is approved.
//!
//! [`shipments`] holds the rules; [`handler`] answers `shipping.commands` and follows
//! `order.events` (dispatch on OrderApproved), replying on `shipping.events`; [`http`] shows a
//! shipment. [`App`] wires them to Postgres, Kafka and the schema registry through
//! [`saga_runtime::Runtime`].

pub mod handler;
pub mod http;
pub mod shipments;

use std::net::SocketAddr;

use saga_consumer::ConsumerConfig;
use saga_runtime::{Runtime, RuntimeConfig, RuntimeError, ServiceConfig};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::handler::{CommandHandler, OrderEventHandler};
use crate::shipments::ServedCountries;

pub const SERVICE_NAME: &str = "shipping-service";

/// This service's tables (the outbox's and inbox's come from their crates).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The shared sections (`consumer` is the consumer of `shipping.commands`, its group
/// defaulting to [`SERVICE_NAME`]) plus `order_events_consumer` and `shipping`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub runtime: RuntimeConfig,
    /// The consumer of `order.events`. Unset: the `consumer` settings with the group id
    /// `<consumer group>.order-events` (its own group: it follows another service's topic,
    /// and an inbox namespace of its own).
    #[serde(default)]
    pub order_events_consumer: Option<ConsumerConfig>,
    #[serde(default)]
    pub shipping: ShippingConfig,
}

impl ServiceConfig for Config {
    const NAME: &'static str = SERVICE_NAME;
    const SECTIONS: &'static [&'static str] = &["order_events_consumer", "shipping"];
    fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }
    fn runtime_mut(&mut self) -> &mut RuntimeConfig {
        &mut self.runtime
    }
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

impl Config {
    /// The effective settings of the `order.events` consumer.
    pub fn order_events_consumer(&self) -> ConsumerConfig {
        self.order_events_consumer.clone().unwrap_or_else(|| {
            let commands = self.runtime.consumer_for(SERVICE_NAME);
            ConsumerConfig {
                group_id: format!("{}.order-events", commands.group_id),
                ..commands
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "invalid configuration: `shipping.served_countries`: {0:?} is not an ISO 3166-1 alpha-2 code"
    )]
    InvalidCountry(String),
}

/// The running service's parts, built and ready; [`App::run`] starts them.
pub struct App {
    runtime: Runtime,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let served = ServedCountries::new(&config.shipping.served_countries)
            .map_err(AppError::InvalidCountry)?;
        let order_events = config.order_events_consumer();
        let mut runtime = Runtime::build(SERVICE_NAME, config.runtime, &MIGRATOR).await?;
        let outbox = runtime.outbox();
        let commands = CommandHandler::new(outbox.clone(), served);
        runtime.add_consumer("commands consumer", runtime.consumer_config(), commands)?;
        runtime.add_consumer(
            "order events consumer",
            order_events,
            OrderEventHandler::new(outbox),
        )?;
        Ok(App { runtime })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    pub fn pool(&self) -> &PgPool {
        self.runtime.pool()
    }

    /// Runs the HTTP server, both consumers and the relay until `shutdown` is cancelled or one
    /// of them fails (which cancels the others).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = http::router(self.runtime.pool().clone());
        Ok(self.runtime.run(router, shutdown).await?)
    }
}
