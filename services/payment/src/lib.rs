//! payment-service: customer credit, charges and refunds for the order saga.
//!
//! [`payments`] holds the rules, [`handler`] answers `payment.commands` on `payment.events`,
//! [`http`] is the admin API. [`App`] wires them to Postgres, Kafka and the schema registry
//! through [`saga_runtime::Runtime`].

pub mod handler;
pub mod http;
pub mod payments;

use std::net::SocketAddr;

use saga_runtime::{Runtime, ServiceName, SharedConfig};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::handler::PaymentHandler;

pub const SERVICE_NAME: &str = "payment-service";

/// This service's tables (the outbox's and inbox's come from their crates).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The shared sections only (`http`, `database`, `kafka`, `registry`, `consumer`, `relay`,
/// `components`); the consumer group defaults to [`SERVICE_NAME`].
pub type Config = SharedConfig<PaymentService>;

/// Names this service for [`SharedConfig`].
pub struct PaymentService;

impl ServiceName for PaymentService {
    const NAME: &'static str = SERVICE_NAME;
}

pub type AppError = saga_runtime::RuntimeError;

/// The running service's parts, built and ready; [`App::run`] starts them.
pub struct App {
    runtime: Runtime,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let mut runtime = Runtime::build(SERVICE_NAME, config.runtime, &MIGRATOR).await?;
        let handler = PaymentHandler::new(runtime.outbox());
        runtime.add_consumer("consumer", runtime.consumer_config(), handler)?;
        Ok(App { runtime })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    pub fn pool(&self) -> &PgPool {
        self.runtime.pool()
    }

    /// Runs the HTTP server, the consumer and the relay until `shutdown` is cancelled or one
    /// of them fails (which cancels the others).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = http::router(self.runtime.pool().clone(), self.runtime.admin_auth());
        self.runtime.run(router, shutdown).await
    }
}
