//! The saga's five services as stack components: the catalogue of their binaries, ports,
//! databases and consumer groups, and the `APP_*` environment the local stack gives them.
//!
//! [`Stack::suite`] is the stack `cargo xtask up` runs: the infrastructure of [`Stack::new`]
//! (postgres, broker, topics, schema registry), then these five, then the monitoring: the
//! lag exporter and Prometheus. Test harnesses mostly keep using [`Stack::new`]: they start
//! services of their own on fresh databases.

use std::time::Duration;

use crate::catalog::SERVICE_DATABASES;
use crate::config::StackConfig;
use crate::http_service::HttpService;
use crate::prometheus::{Prometheus, ScrapeTarget};
use crate::supervisor::Stack;

/// One saga service: its stack component name, its cargo package (= binary), where it
/// listens and which database and consumer group it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaService {
    /// Component name (`cargo xtask logs order`).
    pub name: &'static str,
    /// Cargo package and binary name.
    pub bin: &'static str,
    /// Default HTTP port (docs/architecture.md).
    pub port: u16,
    pub database: &'static str,
    /// The group id the service uses by default, spelt out so `cargo xtask status` and the
    /// lag dashboard show the same names as this file (an empty or unset group id means the
    /// service's default, whatever other `APP_CONSUMER__` keys are set). The orchestrator derives `orchestrator.<topic>` per consumer from it, and shipping
    /// `shipping-service.order-events` for its second consumer.
    pub group_id: &'static str,
}

/// In start order: the orchestrator last, so every participant is consuming before the
/// first command can reach it (not needed for correctness, the offsets wait, but a
/// quieter start).
pub const SAGA_SERVICES: &[SagaService] = &[
    SagaService {
        name: "order",
        bin: "order-service",
        port: 18080,
        database: "order_db",
        group_id: "order-service",
    },
    SagaService {
        name: "inventory",
        bin: "inventory-service",
        port: 18082,
        database: "inventory_db",
        group_id: "inventory-service",
    },
    SagaService {
        name: "payment",
        bin: "payment-service",
        port: 18083,
        database: "payment_db",
        group_id: "payment-service",
    },
    SagaService {
        name: "shipping",
        bin: "shipping-service",
        port: 18084,
        database: "shipping_db",
        group_id: "shipping-service",
    },
    SagaService {
        name: "orchestrator",
        bin: "orchestrator-service",
        port: 18085,
        database: "orchestrator_db",
        group_id: "orchestrator",
    },
];

/// What a consumer group's handler does: decides whether reprocessing may re-apply its
/// messages (`cargo xtask rewind --reapply`, docs/messaging.md "Reprocessing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupHandler {
    /// Moves stock or money, drives the saga or sends messages: each message takes effect
    /// once; a rewind relies on the inbox, reapply is refused.
    Effects,
    /// Rewrites derived data only (a read model): its messages may be applied again.
    Projection,
}

/// One consumer group of the suite: the topic it reads, the service (component) that runs
/// it and whose database holds its inbox, and what its handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub group: &'static str,
    pub topic: &'static str,
    pub service: &'static str,
    pub handler: GroupHandler,
}

const fn group(
    group: &'static str,
    topic: &'static str,
    service: &'static str,
    handler: GroupHandler,
) -> ConsumerGroup {
    ConsumerGroup {
        group,
        topic,
        service,
        handler,
    }
}

/// The declared list of the suite's consumer groups (with the group ids of
/// [`SAGA_SERVICES`]). Every handler today has effects: the order read model is projected
/// from the order service's own event store, not from Kafka. A Kafka-fed projection (a
/// console read model, say) is added here as [`GroupHandler::Projection`].
pub const CONSUMER_GROUPS: &[ConsumerGroup] = &[
    group(
        "order-service",
        "order.commands",
        "order",
        GroupHandler::Effects,
    ),
    group(
        "inventory-service",
        "inventory.commands",
        "inventory",
        GroupHandler::Effects,
    ),
    group(
        "payment-service",
        "payment.commands",
        "payment",
        GroupHandler::Effects,
    ),
    group(
        "shipping-service",
        "shipping.commands",
        "shipping",
        GroupHandler::Effects,
    ),
    // Dispatches a shipment on OrderApproved.
    group(
        "shipping-service.order-events",
        "order.events",
        "shipping",
        GroupHandler::Effects,
    ),
    group(
        "orchestrator.order.events",
        "order.events",
        "orchestrator",
        GroupHandler::Effects,
    ),
    group(
        "orchestrator.inventory.events",
        "inventory.events",
        "orchestrator",
        GroupHandler::Effects,
    ),
    group(
        "orchestrator.payment.events",
        "payment.events",
        "orchestrator",
        GroupHandler::Effects,
    ),
    group(
        "orchestrator.shipping.events",
        "shipping.events",
        "orchestrator",
        GroupHandler::Effects,
    ),
];

/// Every binary `up` needs built: the registry, the five services, the lag exporter and
/// the console.
pub fn suite_binaries() -> Vec<&'static str> {
    std::iter::once("schema-registry")
        .chain(SAGA_SERVICES.iter().map(|s| s.bin))
        .chain([LAG_EXPORTER_BIN, CONSOLE_BIN])
        .collect()
}

/// Cargo package and binary of services/lag-exporter; also its component name.
pub const LAG_EXPORTER_BIN: &str = "lag-exporter";

/// Every consumer group of the suite's services as the local stack configures them. The
/// lag exporter is given this list: tansu's ListGroups does not answer groups whose members
/// only `assign()` and commit, which is what the services do on the local stack (see
/// docs/lag.md). The orchestrator runs one consumer per topic it reads (`<group>.<topic>`),
/// shipping a second one on order.events (`<group>.order-events`).
pub fn suite_consumer_groups() -> Vec<String> {
    let mut groups = Vec::new();
    for svc in SAGA_SERVICES {
        match svc.name {
            "orchestrator" => groups.extend(
                [
                    "order.events",
                    "inventory.events",
                    "payment.events",
                    "shipping.events",
                ]
                .map(|topic| format!("{}.{topic}", svc.group_id)),
            ),
            "shipping" => {
                groups.push(svc.group_id.to_owned());
                groups.push(format!("{}.order-events", svc.group_id));
            }
            _ => groups.push(svc.group_id.to_owned()),
        }
    }
    groups
}

/// The operator console (services/console, docs/console.md): component name and binary.
pub const CONSOLE_BIN: &str = "console";
/// Its default port (a private stack gives it a free one in `service_ports`).
pub const CONSOLE_PORT: u16 = 18087;

fn console_port(cfg: &StackConfig) -> u16 {
    cfg.service_port(CONSOLE_BIN).unwrap_or(CONSOLE_PORT)
}

/// `http://host:port` of the console in a stack.
pub fn console_url(cfg: &StackConfig) -> String {
    format!("http://{}:{}", cfg.host, console_port(cfg))
}

/// The console as a stack component: the stack's admin token (operators log in with it, and
/// it calls the services' admin routes with it), every service's URL, the exporter and
/// Prometheus.
pub fn console_component(cfg: &StackConfig) -> HttpService {
    let mut svc = HttpService::new(CONSOLE_BIN, CONSOLE_BIN, console_port(cfg))
        .admin_token()
        .env("APP_CONSOLE__EXPORTER_URL", cfg.lag_exporter_url())
        .env("APP_CONSOLE__PROMETHEUS_URL", cfg.prometheus_url())
        .env("NO_COLOR", "1");
    for service in SAGA_SERVICES {
        svc = svc.env(
            format!("APP_CONSOLE__SERVICES__{}", service.name.to_uppercase()),
            service.url(cfg),
        );
    }
    svc
}

/// Settings of the services in the local stack that users may want to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteOptions {
    /// `fetch.wait.max.ms` of every consumer. With the patched broker (as on Kafka) a fetch
    /// answers as soon as data arrives, so this costs no latency; it only sets how often an
    /// idle consumer asks again, i.e. the idle broker's CPU.
    pub fetch_wait_max_ms: u32,
    /// Destination countries shipping serves (ISO 3166-1 alpha-2). The demo's
    /// "shipping refused" path ships to a country outside this list.
    pub served_countries: Vec<String>,
    /// `RUST_LOG` of the services.
    pub log_filter: String,
    /// How often Prometheus scrapes and evaluates the alert rules.
    pub scrape_interval: Duration,
    /// The lag exporter's poll interval (`lag.poll_interval_ms`).
    pub lag_poll_interval: Duration,
    /// The lag exporter's `lag.stall_after_secs`: lag with no commit this long is STALLED
    /// (and the ConsumerGroupStalled alert pending).
    pub lag_stall_after: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            fetch_wait_max_ms: crate::SUITE_FETCH_WAIT_MS,
            served_countries: ["DE", "FR", "NL", "GB", "US"].map(String::from).to_vec(),
            log_filter: "info".to_owned(),
            scrape_interval: Duration::from_secs(5),
            lag_poll_interval: Duration::from_secs(2),
            lag_stall_after: Duration::from_secs(30),
        }
    }
}

impl SagaService {
    /// The service by component name.
    pub fn named(name: &str) -> Option<&'static SagaService> {
        SAGA_SERVICES.iter().find(|s| s.name == name)
    }

    /// Its HTTP port in a stack: [`StackConfig::service_ports`], else the default.
    pub fn port_in(&self, cfg: &StackConfig) -> u16 {
        cfg.service_port(self.name).unwrap_or(self.port)
    }

    /// `http://host:port` of this service in a stack.
    pub fn url(&self, cfg: &StackConfig) -> String {
        format!("http://{}:{}", cfg.host, self.port_in(cfg))
    }

    /// This service as a stack component with the local stack's environment.
    pub fn component(&self, cfg: &StackConfig, opts: &SuiteOptions) -> HttpService {
        debug_assert!(
            SERVICE_DATABASES
                .iter()
                .any(|d| d.database == self.database)
        );
        let mut svc = HttpService::new(self.name, self.bin, self.port_in(cfg))
            .database(self.database)
            .admin_token()
            .registry_client()
            // One instance per service on tansu, which does not evict a member killed with
            // SIGKILL: `assign` lets a restarted service resume at once from its committed
            // offsets instead of waiting for a rebalance that never comes (STACK-FACTS).
            .env("APP_CONSUMER__MEMBERSHIP", "assign")
            .env("APP_CONSUMER__GROUP_ID", self.group_id)
            .env(
                "APP_KAFKA__FETCH_WAIT_MAX_MS",
                opts.fetch_wait_max_ms.to_string(),
            )
            .env("RUST_LOG", &opts.log_filter)
            // The log is a file (`cargo xtask logs`): no terminal colour codes in it.
            .env("NO_COLOR", "1");
        if self.name == "orchestrator" {
            // A shipment step that is never answered gives up after 8 s instead of 120 s, so
            // the demo's timeout path finishes quickly.
            svc = svc.env("APP_SAGA__STEP_DEADLINES_MS__SCHEDULE_SHIPMENT", "8000");
        }
        if self.name == "shipping" {
            svc = svc.env(
                "APP_SHIPPING__SERVED_COUNTRIES",
                json_string_list(&opts.served_countries),
            );
        }
        svc
    }
}

/// `["DE","FR"]`: the form figment reads a list from one environment variable in.
fn json_string_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[{}]", quoted.join(","))
}

/// The lag exporter of the suite: every group of [`suite_consumer_groups`] besides the ones
/// ListGroups finds, no registry (it reads offsets, not payloads).
pub fn lag_exporter(cfg: &StackConfig, opts: &SuiteOptions) -> HttpService {
    HttpService::new(LAG_EXPORTER_BIN, LAG_EXPORTER_BIN, cfg.lag_exporter_port)
        .without_registry()
        .env(
            "APP_LAG__GROUPS",
            json_string_list(&suite_consumer_groups()),
        )
        .env(
            "APP_LAG__POLL_INTERVAL_MS",
            opts.lag_poll_interval.as_millis().to_string(),
        )
        .env(
            "APP_LAG__STALL_AFTER_SECS",
            opts.lag_stall_after.as_secs_f64().to_string(),
        )
        .env("RUST_LOG", &opts.log_filter)
        .env("NO_COLOR", "1")
}

/// Prometheus scraping the registry, the five services (job `saga-services`, label
/// `service`) and the lag exporter (job `lag-exporter`), as docker-compose's does.
pub fn suite_prometheus(cfg: &StackConfig, opts: &SuiteOptions) -> Prometheus {
    let mut targets = vec![ScrapeTarget::new(
        "saga-services",
        "schema-registry",
        cfg.registry_port,
    )];
    targets.extend(
        SAGA_SERVICES
            .iter()
            .map(|s| ScrapeTarget::new("saga-services", s.name, s.port_in(cfg))),
    );
    targets.push(ScrapeTarget::new(
        LAG_EXPORTER_BIN,
        LAG_EXPORTER_BIN,
        cfg.lag_exporter_port,
    ));
    Prometheus::new(targets).scrape_interval(opts.scrape_interval)
}

impl Stack {
    /// The whole suite: the infrastructure of [`Stack::new`], the five saga services, the
    /// lag exporter, Prometheus and the operator console.
    pub fn suite(cfg: StackConfig, opts: &SuiteOptions) -> Stack {
        let exporter = lag_exporter(&cfg, opts);
        let prometheus = suite_prometheus(&cfg, opts);
        let console = console_component(&cfg);
        SAGA_SERVICES
            .iter()
            .fold(Stack::new(cfg.clone()), |stack, svc| {
                stack.push(svc.component(&cfg, opts))
            })
            .push(exporter)
            .push(prometheus)
            .push(console)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Component;

    #[test]
    fn every_service_has_its_own_database_role_and_port() {
        for svc in SAGA_SERVICES {
            let db = SERVICE_DATABASES
                .iter()
                .find(|d| d.database == svc.database)
                .expect("database in the catalogue");
            assert_eq!(db.component, svc.name);
        }
        let mut ports: Vec<u16> = SAGA_SERVICES.iter().map(|s| s.port).collect();
        ports.push(crate::config::DEFAULT_REGISTRY_PORT);
        ports.push(crate::config::DEFAULT_LAG_EXPORTER_PORT);
        ports.push(crate::config::DEFAULT_PROMETHEUS_PORT);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), SAGA_SERVICES.len() + 3);
    }

    #[test]
    fn the_exporter_is_told_every_group_of_the_suite_without_a_registry() {
        let groups = suite_consumer_groups();
        for group in [
            "order-service",
            "inventory-service",
            "payment-service",
            "shipping-service",
            "shipping-service.order-events",
            "orchestrator.order.events",
            "orchestrator.shipping.events",
        ] {
            assert!(groups.iter().any(|g| g == group), "{group} missing");
        }
        let cfg = StackConfig::defaults();
        let spec = lag_exporter(&cfg, &SuiteOptions::default())
            .process(&cfg)
            .unwrap()
            .unwrap();
        assert!(spec.env.iter().all(|(k, _)| k != "APP_REGISTRY__URL"));
        let listen = spec.env.iter().find(|(k, _)| k == "APP_HTTP__LISTEN");
        assert_eq!(listen.unwrap().1, "127.0.0.1:18086");
    }

    #[test]
    fn the_suite_starts_services_after_the_infrastructure_with_explicit_groups() {
        // Secrets are generated on first use: keep them out of the workspace's `.stack`.
        let dir = std::env::temp_dir().join(format!("saga-stack-test-{}", uuid::Uuid::new_v4()));
        let cfg = StackConfig {
            data_dir: dir.clone(),
            ..StackConfig::defaults()
        };
        let stack = Stack::suite(cfg.clone(), &SuiteOptions::default());
        assert_eq!(
            stack.component_names(),
            [
                "postgres",
                "broker",
                "topics",
                "schema-registry",
                "order",
                "inventory",
                "payment",
                "shipping",
                "orchestrator",
                "lag-exporter",
                "prometheus",
                "console"
            ]
        );
        let shipping = SagaService::named("shipping")
            .unwrap()
            .component(&cfg, &SuiteOptions::default());
        let spec = shipping.process(&cfg).unwrap().unwrap();
        let env = |key: &str| {
            spec.env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(env("APP_CONSUMER__MEMBERSHIP").as_deref(), Some("assign"));
        assert_eq!(
            env("APP_CONSUMER__GROUP_ID").as_deref(),
            Some("shipping-service")
        );
        assert_eq!(
            env("APP_SHIPPING__SERVED_COUNTRIES").as_deref(),
            Some(r#"["DE","FR","NL","GB","US"]"#)
        );
        let password = cfg.db_password("shipping_svc").unwrap();
        assert_ne!(password, "shipping_svc");
        assert_eq!(
            env("APP_DATABASE__URL"),
            Some(format!(
                "postgres://shipping_svc:{password}@127.0.0.1:55432/shipping_db"
            ))
        );
        assert_eq!(
            env("APP_REGISTRY__PASSWORD"),
            Some(cfg.registry_password().unwrap())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cfg.secrets_dir()), 0o700);
        assert_eq!(mode(&cfg.secrets_dir().join("registry-password")), 0o600);
        assert_eq!(mode(&cfg.secrets_dir().join("db-shipping_svc")), 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod declared_groups {
    /// The rewind's declared list and the lag exporter's list name the same groups.
    #[test]
    fn the_declared_consumer_groups_are_the_suites() {
        let declared: Vec<String> = super::CONSUMER_GROUPS
            .iter()
            .map(|g| g.group.to_owned())
            .collect();
        assert_eq!(declared, super::suite_consumer_groups());
    }
}
