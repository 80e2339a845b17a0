//! The five services in this process: each `App::build` with the suite's database, prefix
//! and fast settings, run on a spawned task until its token is cancelled.

use std::net::SocketAddr;
use std::time::Duration;

use saga_consumer::ConsumerConfig;
use saga_outbox::RelayConfig;
use saga_service_kit::HttpConfig;
use saga_service_kit::app::{Components, RegistryConfig};
use saga_service_kit::auth::AuthConfig;
use saga_service_kit::config::DatabaseConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Service, Suite};

pub(crate) struct InProcess {
    pub url: String,
    token: CancellationToken,
    handle: JoinHandle<Result<(), String>>,
}

impl InProcess {
    /// Cancels the token and waits for the service to drain.
    pub async fn stop(self) -> Result<(), String> {
        self.token.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("panicked: {join}")),
            Err(_) => Err("did not stop within 30 s".to_owned()),
        }
    }
}

fn admin() -> AuthConfig {
    AuthConfig::with_admin_token(crate::ADMIN_TOKEN)
}

fn listen() -> HttpConfig {
    HttpConfig::default()
}

fn database(suite: &Suite, service: Service) -> DatabaseConfig {
    let mut db = DatabaseConfig::new(suite.database_url(service));
    db.max_connections = suite.options.db_max_connections;
    db
}

fn consumer(suite: &Suite, service: Service) -> ConsumerConfig {
    ConsumerConfig {
        membership: suite.membership(service),
        // Transient failures (a lost row lock, a version conflict) retry quickly.
        backoff_initial_ms: 20,
        backoff_max_ms: 1_000,
        shutdown_grace_ms: 5_000,
        ..ConsumerConfig::new(suite.group_id(service))
    }
}

fn registry(suite: &Suite) -> RegistryConfig {
    RegistryConfig::new(suite.registry_url.clone())
}

fn spawn<F, E>(addr: Option<SocketAddr>, run: impl FnOnce(CancellationToken) -> F) -> InProcess
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let token = CancellationToken::new();
    let fut = run(token.clone());
    let handle = tokio::spawn(async move { fut.await.map_err(|e| e.to_string()) });
    InProcess {
        url: format!("http://{}", addr.expect("HTTP is on")),
        token,
        handle,
    }
}

/// The sections every service shares (`saga_runtime::RuntimeConfig`).
fn runtime(suite: &Suite, service: Service, relay: RelayConfig) -> saga_runtime::RuntimeConfig {
    saga_runtime::RuntimeConfig {
        http: listen(),
        database: database(suite, service),
        kafka: suite.kafka.clone(),
        registry: registry(suite),
        consumer: consumer(suite, service),
        relay,
        components: Components::default(),
        auth: admin(),
        retention: Default::default(),
    }
}

pub(crate) async fn start(suite: &Suite, service: Service) -> InProcess {
    let relay = RelayConfig {
        poll_interval_ms: suite.options.relay_poll_ms,
        ..RelayConfig::default()
    };
    match service {
        Service::Order => {
            let config = order_service::Config {
                runtime: runtime(suite, service, relay),
                order: order_service::OrderSettings {
                    projector_poll_ms: 200,
                    pending_stale_after: suite
                        .options
                        .order_pending_stale_after
                        .as_deref()
                        .map(|d| saga_service_kit::duration::parse(d).expect("a duration"))
                        .unwrap_or(order_service::OrderSettings::default().pending_stale_after),
                    pending_stale_check_ms: 200,
                    ..order_service::OrderSettings::default()
                },
            };
            let app = order_service::App::build(config)
                .await
                .unwrap_or_else(|e| panic!("start order-service: {e}"));
            spawn(Some(app.local_addr()), |t| app.run(t))
        }
        Service::Inventory => {
            let config = inventory_service::Config::new(runtime(suite, service, relay));
            let app = inventory_service::App::build(config)
                .await
                .unwrap_or_else(|e| panic!("start inventory-service: {e}"));
            spawn(Some(app.local_addr()), |t| app.run(t))
        }
        Service::Payment => {
            let config = payment_service::Config::new(runtime(suite, service, relay));
            let app = payment_service::App::build(config)
                .await
                .unwrap_or_else(|e| panic!("start payment-service: {e}"));
            spawn(Some(app.local_addr()), |t| app.run(t))
        }
        Service::Shipping => {
            let mut shipping = shipping_service::ShippingConfig::default();
            if let Some(countries) = &suite.options.served_countries {
                shipping.served_countries = countries.clone();
            }
            let config = shipping_service::Config {
                runtime: runtime(suite, service, relay),
                order_events_consumer: None,
                shipping,
            };
            let app = shipping_service::App::build(config)
                .await
                .unwrap_or_else(|e| panic!("start shipping-service: {e}"));
            spawn(Some(app.local_addr()), |t| app.run(t))
        }
        Service::Orchestrator => {
            let config = orchestrator_service::Config {
                runtime: runtime(suite, service, relay),
                saga: orchestrator_service::SagaConfig {
                    retry_timeout_ms: suite.options.retry_timeout_ms,
                    retry_max_backoff_ms: suite.options.retry_timeout_ms * 4,
                    retry_interval_ms: suite.options.retry_interval_ms,
                    step_deadlines_ms: suite.options.step_deadlines_ms.clone(),
                    ..orchestrator_service::SagaConfig::default()
                },
            };
            let app = orchestrator_service::App::build(config)
                .await
                .unwrap_or_else(|e| panic!("start orchestrator-service: {e}"));
            spawn(app.local_addr(), |t| app.run(t))
        }
    }
}
