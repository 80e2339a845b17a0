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
pub mod dead_letters;
pub mod engine;
pub mod http;
pub mod runner;
pub mod sagas;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use saga_consumer::Handler;
use saga_contracts::TopicMessage;
use saga_runtime::{Runtime, RuntimeConfig, RuntimeError, ServiceConfig};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use runner::{Handled, OperateError, OperatorAction, SagaConfig, SagaError, SagaRunner};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const SERVICE_NAME: &str = "orchestrator-service";

/// Consumer group prefix when `consumer.group_id` is not set.
pub const DEFAULT_GROUP: &str = "orchestrator";

/// The service's configuration (`APP_` env with `__` nesting, or a TOML file): the shared
/// sections plus `saga`. The `consumer` section is shared by the four consumers; each gets
/// its own group `<group_id>.<topic>` (default group id: [`DEFAULT_GROUP`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub saga: SagaConfig,
}

impl ServiceConfig for Config {
    const NAME: &'static str = SERVICE_NAME;
    const DEFAULT_GROUP: &'static str = DEFAULT_GROUP;
    const SECTIONS: &'static [&'static str] = &["saga"];
    fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }
    fn runtime_mut(&mut self) -> &mut RuntimeConfig {
        &mut self.runtime
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub struct App {
    runtime: Runtime,
    runner: SagaRunner,
}

impl App {
    /// Connect, migrate, register the schemas, bind the HTTP port. Nothing runs until
    /// [`App::run`].
    pub async fn build(config: Config) -> Result<App, AppError> {
        config.saga.validate().map_err(AppError::Config)?;
        let mut runtime = Runtime::build(DEFAULT_GROUP, config.runtime, &MIGRATOR).await?;
        let runner = SagaRunner::new(runtime.outbox(), config.saga.clone());
        add_consumer(
            &mut runtime,
            "consumer-order-events",
            consumers::OrderEvents(runner.clone()),
        )?;
        add_consumer(
            &mut runtime,
            "consumer-inventory-events",
            consumers::InventoryEvents(runner.clone()),
        )?;
        add_consumer(
            &mut runtime,
            "consumer-payment-events",
            consumers::PaymentEvents(runner.clone()),
        )?;
        add_consumer(
            &mut runtime,
            "consumer-shipping-events",
            consumers::ShippingEvents(runner.clone()),
        )?;
        // Only with the consumers on: tests without them feed dead letters themselves.
        if config.saga.watch_dead_letters && runtime.config().components.consumer {
            let (runner, pool) = (runner.clone(), runtime.pool().clone());
            let kafka = runtime.config().kafka.clone();
            let group = format!(
                "{}.{}",
                runtime.consumer_config().group_id,
                saga_contracts::topics::DEAD_LETTERS
            );
            runtime.add_task("dead-letter-watch", move |token| {
                dead_letters::watch(runner, pool, kafka, group, token)
            });
        }
        if config.saga.retry_task {
            let (runner, pool) = (runner.clone(), runtime.pool().clone());
            runtime.add_task("saga-retry", move |token| retry_loop(runner, pool, token));
        }
        Ok(App { runtime, runner })
    }

    /// The HTTP address (port 0 resolved); `None` when HTTP is switched off.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.runtime
            .config()
            .components
            .http
            .then(|| self.runtime.local_addr())
    }

    pub fn pool(&self) -> &PgPool {
        self.runtime.pool()
    }

    /// The saga logic, for tests that feed messages directly and drive retries.
    pub fn runner(&self) -> &SagaRunner {
        &self.runner
    }

    /// Run every enabled part until `shutdown` is cancelled (or one part fails).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let router = http::router(self.runtime.pool().clone())
            // Operator actions need the admin token (docs/security.md).
            .merge(self.runtime.admin_auth().protect(http::admin_routes(
                self.runtime.pool().clone(),
                self.runner.clone(),
            )))
            .fallback(saga_service_kit::problem::not_found);
        Ok(self.runtime.run(router, shutdown).await?)
    }
}

/// One consumer per topic the saga reads, each in a group of its own (`<group>.<topic>`):
/// each consumer's offsets and inbox rows stay its own, and no rebalance mixes members with
/// different subscriptions.
fn add_consumer<H: Handler>(
    runtime: &mut Runtime,
    name: &'static str,
    handler: H,
) -> Result<(), AppError> {
    let mut cfg = runtime.consumer_config();
    cfg.group_id = format!("{}.{}", cfg.group_id, H::Message::TOPIC);
    Ok(runtime.add_consumer(name, cfg, handler)?)
}

/// Fire passed deadlines, re-send overdue commands and refresh the gauges, every
/// `retry_interval_ms`; compact finished timelines every `timeline_compaction_interval_secs`.
/// A failed round is logged and retried next tick: the database may be briefly away (a row
/// that cannot be processed does not fail the round: it becomes an incident).
async fn retry_loop(
    runner: SagaRunner,
    pool: PgPool,
    shutdown: CancellationToken,
) -> Result<(), SagaError> {
    let mut tick = tokio::time::interval(Duration::from_millis(
        runner.config().retry_interval_ms.max(10),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let compaction_every =
        Duration::from_secs(runner.config().timeline_compaction_interval_secs.max(1));
    let mut last_compaction: Option<tokio::time::Instant> = None;
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
        if last_compaction.is_none_or(|t| t.elapsed() >= compaction_every) {
            last_compaction = Some(tokio::time::Instant::now());
            if let Err(e) = runner.compact_timelines_once(&pool).await {
                tracing::warn!(error = %e, "timeline compaction failed");
            }
        }
    }
}
