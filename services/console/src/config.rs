//! The console's configuration: `http`, `kafka`, `registry`, `auth` (the shared sections) and
//! `console` (where the services, the lag exporter and Prometheus answer).

use std::collections::BTreeMap;

use saga_kafka::KafkaConfig;
use saga_service_kit::app::RegistryConfig;
use saga_service_kit::auth::AuthConfig;
use saga_service_kit::config::HttpConfig;
use serde::Deserialize;

/// Default port of the console in the local stack (docs/console.md).
pub const DEFAULT_PORT: u16 = 18087;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    /// Only for the dead letters: the console lists and replays them with
    /// `saga_consumer::dead_letters` (no service owns the dead-letter topic).
    pub kafka: KafkaConfig,
    /// Decodes dead-letter payloads.
    pub registry: RegistryConfig,
    /// `auth.admin_token`: what an operator must present to use the console, and what the
    /// console sends to the services' admin routes.
    pub auth: AuthConfig,
    pub console: ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig {
                listen: ([127, 0, 0, 1], DEFAULT_PORT).into(),
            },
            kafka: KafkaConfig::default(),
            registry: RegistryConfig::new("http://127.0.0.1:18081"),
            auth: AuthConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

/// `console` section (`APP_CONSOLE__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Base URL of each service, by name (`APP_CONSOLE__SERVICES__ORDER=http://...`): their
    /// `/metrics` give the outbox backlog, their `/admin/logs` a saga's log lines.
    pub services: BTreeMap<String, String>,
    /// The orchestrator's name in `services` (its saga API and operator actions).
    pub orchestrator: String,
    /// The lag exporter (`GET /lag`), empty when there is none.
    pub exporter_url: String,
    /// Prometheus' HTTP API (lag history for the charts), empty when there is none.
    pub prometheus_url: String,
    /// Minutes of history in the lag chart.
    pub chart_minutes: u32,
    /// A saga at the same step this long counts as stuck (sorted first, marked).
    pub stuck_after_secs: u64,
    /// Timeout of each request the console makes.
    pub request_timeout_ms: u64,
    /// Dead-letter topic (logical name; the `kafka.topic_prefix` is added).
    pub dead_letter_topic: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        let services = [
            ("order", 18080),
            ("inventory", 18082),
            ("payment", 18083),
            ("shipping", 18084),
            ("orchestrator", 18085),
        ]
        .into_iter()
        .map(|(name, port)| (name.to_owned(), format!("http://127.0.0.1:{port}")))
        .collect();
        Self {
            services,
            orchestrator: "orchestrator".into(),
            exporter_url: "http://127.0.0.1:18086".into(),
            prometheus_url: "http://127.0.0.1:19090".into(),
            chart_minutes: 15,
            stuck_after_secs: 60,
            request_timeout_ms: 5_000,
            dead_letter_topic: saga_kafka::topics::DEAD_LETTERS.into(),
        }
    }
}
