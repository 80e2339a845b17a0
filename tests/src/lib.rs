//! The whole order-saga suite, started for one test: [`Suite::start`] gives five fresh
//! databases, a unique topic prefix on the shared broker, and the five services (in-process on
//! port 0, or as child processes of their binaries for crash tests), plus helpers that talk to
//! them over HTTP the way a client or an operator would.
//!
//! Several suites run side by side on one broker and one Postgres: every topic and consumer
//! group name carries the suite's prefix, every database is new.

mod duplicate;
pub mod fuzz;
mod process;
mod services;
pub mod soak;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use saga_contracts::{Money, OrderId};
use saga_kafka::KafkaConfig;
use saga_testkit::{TestDb, TestStack, wait_until};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The admin token of the services this harness starts.
pub const ADMIN_TOKEN: &str = "suite-admin-token-0123456789";

pub use duplicate::Duplicator;
pub use order_service::http::OrderView;
pub use saga_consumer::Membership;
pub use saga_contracts::{Currency, CustomerId, Sku};

use crate::process::ChildService;
use crate::services::InProcess;

/// How long one saga may take before a test calls it stuck. Generous: two cores are shared
/// by every engineer's builds and tests.
pub const SAGA_DEADLINE: Duration = Duration::from_secs(60);

/// The five services of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Order,
    Inventory,
    Payment,
    Shipping,
    Orchestrator,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Order,
        Service::Inventory,
        Service::Payment,
        Service::Shipping,
        Service::Orchestrator,
    ];

    /// The package and binary name.
    pub fn bin(self) -> &'static str {
        match self {
            Service::Order => "order-service",
            Service::Inventory => "inventory-service",
            Service::Payment => "payment-service",
            Service::Shipping => "shipping-service",
            Service::Orchestrator => "orchestrator-service",
        }
    }
}

/// What to start and how fast it should react.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Shipping's served countries; `None` keeps the service default.
    pub served_countries: Option<Vec<String>>,
    /// Services run as child processes of their binaries (so they can be SIGKILLed); the rest
    /// run in this process.
    pub processes: Vec<Service>,
    /// Services whose consumers `subscribe()` as a group; all others `assign()` every
    /// partition (the only mode in which a killed instance can be restarted on tansu, see
    /// STACK-FACTS).
    pub group_membership: Vec<Service>,
    /// One more in-process instance per entry (same database, same consumer groups).
    pub extra_instances: Vec<Service>,
    /// `fetch.wait.max.ms` of every consumer: no latency cost on the patched broker, which
    /// answers a fetch when data arrives; it only paces idle consumers.
    pub fetch_wait_max_ms: u32,
    /// Safety-net poll of every outbox relay (they are woken by NOTIFY).
    pub relay_poll_ms: u64,
    /// The orchestrator re-sends a command unanswered this long.
    pub retry_timeout_ms: u64,
    /// How often the orchestrator looks for overdue commands.
    pub retry_interval_ms: u64,
    /// Pool size of each service instance (the stack's Postgres allows 300 connections and
    /// tests run in parallel).
    pub db_max_connections: u32,
    /// `host:port` a child-process service reaches its database through instead of the
    /// stack's PostgreSQL (e.g. a TCP proxy the chaos soak can cut).
    pub database_hosts: HashMap<Service, String>,
    /// Extra environment of child-process services (e.g. a test-only fault switch).
    pub extra_env: Vec<(Service, String, String)>,
    /// Child-process services that run in a network namespace of their own (the chaos
    /// soak's `cut-broker` fault), reached at the namespace's address.
    pub netns: HashMap<Service, ServiceNetns>,
    /// The orchestrator's step deadline overrides in ms by step name (`saga.step_deadlines_ms`);
    /// empty keeps the step table's defaults.
    pub step_deadlines_ms: std::collections::BTreeMap<String, u64>,
    /// The order service's `order.pending_stale_after` (e.g. `30s`); `None` keeps its default.
    pub order_pending_stale_after: Option<String>,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            served_countries: None,
            processes: Vec::new(),
            group_membership: Vec::new(),
            extra_instances: Vec::new(),
            fetch_wait_max_ms: saga_stack::SUITE_FETCH_WAIT_MS,
            relay_poll_ms: 200,
            retry_timeout_ms: 3_000,
            retry_interval_ms: 100,
            db_max_connections: 6,
            database_hosts: HashMap::new(),
            extra_env: Vec::new(),
            netns: HashMap::new(),
            step_deadlines_ms: std::collections::BTreeMap::new(),
            order_pending_stale_after: None,
        }
    }
}

/// A network namespace a child-process service is started in (`ip netns exec <name>`): it
/// listens on `address`, where the test reaches it.
#[derive(Debug, Clone)]
pub struct ServiceNetns {
    pub name: String,
    pub address: std::net::Ipv4Addr,
    /// The `ip` binary of iproute2.
    pub ip: PathBuf,
}

/// One running instance of a service.
enum Instance {
    InProcess(InProcess),
    Process(ChildService),
}

impl Instance {
    fn url(&self) -> &str {
        match self {
            Instance::InProcess(i) => &i.url,
            Instance::Process(p) => &p.url,
        }
    }
}

/// Stock of one SKU as the inventory service reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct StockView {
    pub available: i64,
    pub reserved: i64,
}

/// A customer's account as the payment service reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct AccountView {
    pub credit: Money,
    pub charged: Money,
}

/// An order's shipment as the shipping service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentView {
    pub shipment_id: Option<String>,
    /// `scheduled | refused | cancelled | dispatched | tombstone`.
    pub status: String,
    pub country: Option<String>,
    pub refusal_reason: Option<String>,
    pub dispatched_at: Option<String>,
}

/// The suite of one test.
pub struct Suite {
    pub prefix: String,
    pub kafka: KafkaConfig,
    pub registry_url: String,
    options: SuiteOptions,
    dbs: HashMap<Service, TestDb>,
    instances: HashMap<Service, Vec<Instance>>,
    http: reqwest::Client,
    log_dir: PathBuf,
}

impl Suite {
    /// The default suite: every service once, in-process, `assign` membership.
    pub async fn start() -> Suite {
        Self::start_with(SuiteOptions::default()).await
    }

    pub async fn start_with(options: SuiteOptions) -> Suite {
        Self::start_on(TestStack::get().await, options).await
    }

    /// A suite on `stack` rather than the process-wide test stack (the chaos soak brings
    /// its own, whose broker and database it restarts).
    pub async fn start_on(stack: &TestStack, options: SuiteOptions) -> Suite {
        init_tracing();
        let registry_url = registry_url(stack).await;
        let prefix = format!("e2e{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let kafka = KafkaConfig {
            bootstrap_servers: stack.kafka_bootstrap().to_owned(),
            fetch_wait_max_ms: options.fetch_wait_max_ms,
            topic_prefix: prefix.clone(),
            // Lag statistics are for dashboards; they only cost CPU here.
            statistics_interval_ms: 0,
            ..KafkaConfig::default()
        };
        saga_kafka::admin::ensure_suite_topics(&kafka)
            .await
            .unwrap_or_else(|e| panic!("create the suite's topics: {e}"));
        let mut dbs = HashMap::new();
        for service in Service::ALL {
            dbs.insert(service, stack.fresh_database().await);
        }
        let log_dir = std::env::temp_dir().join(format!("saga-e2e-{prefix}logs"));
        let mut suite = Suite {
            prefix,
            kafka,
            registry_url,
            options,
            dbs,
            instances: HashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            log_dir,
        };
        // Participants and the order service first, the orchestrator last: it is the one
        // that starts talking.
        for service in [
            Service::Inventory,
            Service::Payment,
            Service::Shipping,
            Service::Order,
            Service::Orchestrator,
        ] {
            suite.start_instance(service).await;
        }
        for service in suite.options.extra_instances.clone() {
            let instance = Instance::InProcess(services::start(&suite, service).await);
            suite.instances.entry(service).or_default().push(instance);
        }
        suite
    }

    /// Starts one more instance of `service` as configured (process or in-process).
    async fn start_instance(&mut self, service: Service) {
        let instance = if self.options.processes.contains(&service) {
            Instance::Process(ChildService::spawn(self, service).await)
        } else {
            Instance::InProcess(services::start(self, service).await)
        };
        self.instances.entry(service).or_default().push(instance);
    }

    pub fn options(&self) -> &SuiteOptions {
        &self.options
    }

    fn membership(&self, service: Service) -> Membership {
        if self.options.group_membership.contains(&service) {
            Membership::Group
        } else {
            Membership::Assign
        }
    }

    /// Consumer group id of `service`: prefixed, so suites on one broker never share a group.
    pub fn group_id(&self, service: Service) -> String {
        let base = match service {
            Service::Orchestrator => "orchestrator",
            other => other.bin(),
        };
        format!("{}{base}", self.prefix)
    }

    /// Base URL (`http://127.0.0.1:port`) of the first instance of `service`.
    pub fn url(&self, service: Service) -> String {
        self.instances
            .get(&service)
            .and_then(|v| v.first())
            .map(|i| i.url().to_owned())
            .unwrap_or_else(|| panic!("{service:?} is not running"))
    }

    /// The superuser pool of `service`'s database, to inspect its tables.
    pub fn pool(&self, service: Service) -> &PgPool {
        &self.dbs[&service].pool
    }

    pub fn database_url(&self, service: Service) -> &str {
        &self.dbs[&service].url
    }

    /// The admin token every service of the suite is started with (`auth.admin_token`).
    pub fn admin_token(&self) -> &'static str {
        ADMIN_TOKEN
    }

    /// The database URL `service` itself is given: [`Suite::database_url`] with the host
    /// replaced by [`SuiteOptions::database_hosts`] when set.
    pub fn service_database_url(&self, service: Service) -> String {
        let url = self.database_url(service);
        match (
            self.options.database_hosts.get(&service),
            url.split_once('@'),
        ) {
            (Some(host), Some((creds, rest))) => {
                let path = rest.split_once('/').map_or("", |(_, path)| path);
                format!("{creds}@{host}/{path}")
            }
            _ => url.to_owned(),
        }
    }

    /// Child-process instances of `service` that have exited on their own (not killed by
    /// [`Suite::kill`]), e.g. after losing their database; they are forgotten, so
    /// [`Suite::restart`] can start them again.
    pub fn reap_exited(&mut self, service: Service) -> usize {
        let Some(instances) = self.instances.get_mut(&service) else {
            return 0;
        };
        let before = instances.len();
        instances.retain_mut(|i| match i {
            Instance::Process(child) => !child.has_exited(),
            Instance::InProcess(_) => true,
        });
        let gone = before - instances.len();
        if instances.is_empty() {
            self.instances.remove(&service);
        }
        gone
    }

    /// Process ids of `service`'s child-process instances (the chaos soak stops and resumes
    /// them).
    pub fn pids(&self, service: Service) -> Vec<u32> {
        self.instances
            .get(&service)
            .into_iter()
            .flatten()
            .filter_map(|i| match i {
                Instance::Process(child) => child.pid(),
                Instance::InProcess(_) => None,
            })
            .collect()
    }

    /// Whether an instance of `service` is registered as running.
    pub fn is_running(&self, service: Service) -> bool {
        self.instances.contains_key(&service)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    // ---------- crash tests (process mode) ----------

    /// SIGKILL every process instance of `service` and wait until it is gone.
    pub async fn kill(&mut self, service: Service) {
        let instances = self.instances.remove(&service).unwrap_or_default();
        let mut kept = Vec::new();
        for instance in instances {
            match instance {
                Instance::Process(mut child) => child.kill().await,
                other => kept.push(other),
            }
        }
        assert!(
            kept.is_empty(),
            "kill({service:?}): only services started as processes can be killed"
        );
    }

    /// Stop every instance of `service` (in-process ones drain gracefully, processes are
    /// killed), so its consumers stop committing; [`Suite::restart`] starts it again.
    pub async fn stop_service(&mut self, service: Service) {
        for instance in self.instances.remove(&service).unwrap_or_default() {
            match instance {
                Instance::InProcess(i) => {
                    if let Err(e) = i.stop().await {
                        panic!("stopping {service:?}: {e}");
                    }
                }
                Instance::Process(mut p) => p.kill().await,
            }
        }
    }

    /// Start `service` again (after [`Suite::kill`] or [`Suite::stop_service`]).
    pub async fn restart(&mut self, service: Service) {
        assert!(
            !self.instances.contains_key(&service),
            "restart({service:?}): it is still running"
        );
        self.start_instance(service).await;
    }

    /// Prints, to stderr, the last `lines` warnings and errors of every service process's log
    /// (the logs are deleted by [`Suite::stop`]): what a failed run leaves for diagnosis in
    /// CI output.
    pub fn print_log_tails(&self, lines: usize) {
        let Ok(dir) = std::fs::read_dir(&self.log_dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let notable: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            eprintln!(
                "---- {} ({} warnings and errors, last {lines})",
                file.display(),
                notable.len()
            );
            for line in &notable[notable.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }

    /// Stops every instance: cancels the in-process ones and waits for them to drain; kills
    /// the child processes. Panics if an in-process service ended with an error.
    pub async fn stop(mut self) {
        let mut errors = Vec::new();
        for (service, instances) in self.instances.drain() {
            for instance in instances {
                match instance {
                    Instance::InProcess(i) => {
                        if let Err(e) = i.stop().await {
                            errors.push(format!("{service:?}: {e}"));
                        }
                    }
                    Instance::Process(mut p) => p.kill().await,
                }
            }
        }
        for (_, db) in self.dbs.drain() {
            db.pool.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
        assert!(errors.is_empty(), "services failed: {errors:?}");
    }

    // ---------- admin helpers ----------

    pub async fn seed_stock(&self, sku: &str, available: i64) {
        let url = format!("{}/stock/{sku}", self.url(Service::Inventory));
        self.put_ok(&url, json!({ "available": available })).await;
    }

    pub async fn set_credit(&self, customer: &str, credit: Money) {
        let url = format!("{}/accounts/{customer}", self.url(Service::Payment));
        self.put_ok(&url, json!({ "credit": credit })).await;
    }

    pub async fn set_price(&self, sku: &str, unit_price: Money) {
        let url = format!("{}/catalog/{sku}", self.url(Service::Order));
        self.put_ok(&url, json!({ "unit_price": unit_price })).await;
    }

    async fn put_ok(&self, url: &str, body: Value) {
        let resp = self
            .http
            .put(url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {url} {body}: {status} {text}");
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Option<T> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status} {text}");
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}")))
    }

    // ---------- the order API ----------

    /// POST /orders with `body` (and an Idempotency-Key), as a client would.
    pub async fn post_order(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let url = format!("{}/orders", self.url(Service::Order));
        let mut req = self.http.post(&url).json(body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// Places an order of `items` (`(sku, quantity)`) shipped to `country`; panics unless
    /// it is accepted (202).
    pub async fn place_order(
        &self,
        customer: &str,
        items: &[(&str, i32)],
        country: &str,
    ) -> OrderId {
        let body = order_body(customer, items, country);
        let resp = self.post_order(&body, None).await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 202, "POST /orders {body}: {text}");
        let placed: Value = serde_json::from_str(&text).unwrap();
        placed["order_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no order_id in {text}"))
    }

    /// GET /orders/{id}; `None` when unknown.
    pub async fn order(&self, order_id: OrderId) -> Option<OrderView> {
        self.get_json(&format!("{}/orders/{order_id}", self.url(Service::Order)))
            .await
    }

    /// GET /sagas/{order_id} of the orchestrator; `None` while it has no saga for the order.
    pub async fn saga(&self, order_id: OrderId) -> Option<Value> {
        self.get_json(&format!(
            "{}/sagas/{order_id}",
            self.url(Service::Orchestrator)
        ))
        .await
    }

    pub async fn stock(&self, sku: &str) -> StockView {
        self.get_json(&format!("{}/stock/{sku}", self.url(Service::Inventory)))
            .await
            .unwrap_or_else(|| panic!("no stock row for {sku}"))
    }

    pub async fn account(&self, customer: &str) -> AccountView {
        self.get_json(&format!(
            "{}/accounts/{customer}",
            self.url(Service::Payment)
        ))
        .await
        .unwrap_or_else(|| panic!("no account for {customer}"))
    }

    /// The order's shipment; `None` when shipping never heard of the order.
    pub async fn shipment(&self, order_id: OrderId) -> Option<ShipmentView> {
        self.get_json(&format!(
            "{}/shipments/{order_id}",
            self.url(Service::Shipping)
        ))
        .await
    }

    /// Whether the order and its saga have both reached a final state.
    pub async fn is_final(&self, order_id: OrderId) -> bool {
        let order_done = matches!(
            self.order(order_id).await.map(|o| o.status),
            Some(s) if s == "APPROVED" || s == "REJECTED"
        );
        order_done
            && matches!(
                self.saga(order_id)
                    .await
                    .as_ref()
                    .and_then(|s| s["state"].as_str()),
                Some("completed" | "aborted")
            )
    }

    /// Waits (with [`SAGA_DEADLINE`]) until the saga is completed or aborted and the order
    /// APPROVED or REJECTED, and returns the order.
    pub async fn wait_final(&self, order_id: OrderId) -> OrderView {
        if wait_until(SAGA_DEADLINE, || self.is_final(order_id))
            .await
            .is_err()
        {
            let order = self.order(order_id).await;
            let saga = self.saga(order_id).await;
            panic!(
                "order {order_id} not final within {SAGA_DEADLINE:?}:\norder: {order:?}\nsaga: {}",
                saga.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        self.order(order_id).await.expect("the order exists")
    }

    /// Waits until every order in `orders` is final, failing only when no order became final
    /// for [`SAGA_DEADLINE`] (a stall), not on a fixed total time.
    pub async fn wait_all_final(&self, orders: &[OrderId]) -> Vec<OrderView> {
        let mut pending: Vec<OrderId> = orders.to_vec();
        let mut last_progress = std::time::Instant::now();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for id in pending {
                if !self.is_final(id).await {
                    still.push(id);
                }
            }
            pending = still;
            if pending.len() < before {
                last_progress = std::time::Instant::now();
            } else if last_progress.elapsed() > SAGA_DEADLINE {
                let first = pending[0];
                let saga = self.saga(first).await;
                panic!(
                    "{} sagas stalled for {SAGA_DEADLINE:?}; e.g. {first}: {}",
                    pending.len(),
                    saga.map(|s| s.to_string()).unwrap_or_default()
                );
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut views = Vec::with_capacity(orders.len());
        for id in orders {
            views.push(self.order(*id).await.expect("the order exists"));
        }
        views
    }

    /// Every (consumer group, logical topic) the suite's services consume.
    pub fn consumer_groups(&self) -> Vec<(String, &'static str)> {
        use saga_kafka::topics;
        let orchestrator = self.group_id(Service::Orchestrator);
        let shipping = self.group_id(Service::Shipping);
        let mut groups = vec![
            (self.group_id(Service::Order), topics::ORDER_COMMANDS),
            (
                self.group_id(Service::Inventory),
                topics::INVENTORY_COMMANDS,
            ),
            (self.group_id(Service::Payment), topics::PAYMENT_COMMANDS),
            (shipping.clone(), topics::SHIPPING_COMMANDS),
            (format!("{shipping}.order-events"), topics::ORDER_EVENTS),
        ];
        for topic in [
            topics::ORDER_EVENTS,
            topics::INVENTORY_EVENTS,
            topics::PAYMENT_EVENTS,
            topics::SHIPPING_EVENTS,
        ] {
            groups.push((format!("{orchestrator}.{topic}"), topic));
        }
        groups
    }

    /// Messages on the suite's topics that their consumer groups have not committed yet.
    pub async fn lag(&self) -> i64 {
        let kafka = self.kafka.clone();
        let groups = self.consumer_groups();
        tokio::task::spawn_blocking(move || kafka_lag(&kafka, &groups))
            .await
            .expect("lag task")
    }

    /// Waits until every consumer group has committed everything on its topic: every
    /// message published so far (duplicates included) has been handled. Fails on a stall.
    pub async fn wait_drained(&self) {
        let mut last = i64::MAX;
        let mut last_progress = std::time::Instant::now();
        loop {
            let lag = self.lag().await;
            if lag == 0 {
                return;
            }
            if lag < last {
                last = lag;
                last_progress = std::time::Instant::now();
            } else if last_progress.elapsed() > SAGA_DEADLINE {
                panic!("consumers stalled with {lag} messages not committed");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages on `topic` (logical name), summed over partitions.
    pub async fn topic_size(&self, topic: &'static str) -> i64 {
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer as _;
            let consumer = lag_consumer(&kafka, "saga-e2e-watermarks");
            let wire = kafka.topic(topic);
            (0..saga_kafka::DEFAULT_PARTITIONS)
                .map(|p| {
                    let (low, high) = consumer
                        .fetch_watermarks(&wire, p, Duration::from_secs(10))
                        .unwrap_or_else(|e| panic!("watermarks of {wire}/{p}: {e}"));
                    high - low
                })
                .sum()
        })
        .await
        .expect("watermark task")
    }

    /// Nothing was dead-lettered by any consumer.
    pub async fn assert_no_dead_letters(&self) {
        let dead = self.topic_size(saga_kafka::topics::DEAD_LETTERS).await;
        assert_eq!(dead, 0, "messages were dead-lettered");
    }

    /// The `traceparent` trace ids on every outbox row about `order_id` in every service's
    /// database, with the message type: (service, message type, trace id).
    pub async fn trace_ids(&self, order_id: OrderId) -> Vec<(Service, String, Option<String>)> {
        let mut out = Vec::new();
        for service in Service::ALL {
            let rows: Vec<(String, sqlx::types::Json<HashMap<String, String>>)> = sqlx::query_as(
                "SELECT message_type, headers FROM outbox WHERE message_key = $1 ORDER BY id",
            )
            .bind(order_id.to_string())
            .fetch_all(self.pool(service))
            .await
            .expect("read outbox headers");
            for (message_type, headers) in rows {
                // traceparent: version-traceid-spanid-flags
                let trace_id = headers
                    .get(saga_kafka::headers::TRACEPARENT)
                    .and_then(|tp| tp.split('-').nth(1))
                    .map(str::to_owned);
                out.push((service, message_type, trace_id));
            }
        }
        out
    }

    /// Republish every outbox row of every service once more, while the suite runs.
    pub fn start_duplicator(&self) -> Duplicator {
        Duplicator::start(self)
    }
}

fn lag_consumer(kafka: &KafkaConfig, group: &str) -> rdkafka::consumer::BaseConsumer {
    let mut config = kafka.client_config();
    config.set("group.id", group);
    config.create().expect("kafka consumer for offsets")
}

/// Sum over groups and partitions of `high watermark - committed offset`; blocking calls.
fn kafka_lag(kafka: &KafkaConfig, groups: &[(String, &'static str)]) -> i64 {
    use rdkafka::consumer::Consumer as _;
    let mut lag = 0;
    for (group, topic) in groups {
        let consumer = lag_consumer(kafka, group);
        let wire = kafka.topic(topic);
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..saga_kafka::DEFAULT_PARTITIONS {
            tpl.add_partition(&wire, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
        for p in 0..saga_kafka::DEFAULT_PARTITIONS {
            let (low, high) = consumer
                .fetch_watermarks(&wire, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {wire}/{p}: {e}"));
            let done = match committed.find_partition(&wire, p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(o)) => o,
                _ => low,
            };
            lag += (high - done).max(0);
        }
    }
    lag
}

/// A POST /orders body.
pub fn order_body(customer: &str, items: &[(&str, i32)], country: &str) -> Value {
    json!({
        "customer_id": customer,
        "items": items.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "1 Main St", "line2": null,
            "city": "Springfield", "postal_code": "12345", "country": country
        }
    })
}

pub fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

/// The stack's registry, or one started in this process (on its own thread and runtime, so
/// it outlives every test's runtime) when the stack has none.
async fn registry_url(stack: &TestStack) -> String {
    if let Some(url) = stack.registry_url() {
        return url.to_owned();
    }
    // Where the stack listens: loopback, or the chaos soak's veth address, which services in
    // network namespaces reach and loopback they do not.
    let host: std::net::IpAddr = stack
        .kafka_bootstrap()
        .rsplit_once(':')
        .and_then(|(host, _)| host.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    URL.get_or_init(|| async {
        let db = stack.fresh_database().await;
        let db_url = db.url.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let auth = schema_registry::auth::AuthConfig::with_password("e2e-test-registry");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("registry runtime");
            rt.block_on(async move {
                let app = schema_registry::App::build(schema_registry::Config {
                    http: saga_service_kit::HttpConfig {
                        listen: std::net::SocketAddr::new(host, 0),
                    },
                    database: saga_service_kit::config::DatabaseConfig::new(db_url),
                    auth: auth.clone(),
                })
                .await
                .expect("start the schema registry");
                let _ = tx.send(auth.url_with_credentials(&format!("http://{}", app.local_addr())));
                app.run(tokio_util::sync::CancellationToken::new())
                    .await
                    .expect("schema registry runs");
            });
        });
        rx.await.expect("registry started")
    })
    .await
    .clone()
}

/// Trace ids on spans and the W3C propagator, as `telemetry::init` installs them in the
/// binaries, so in-process services put `traceparent` on their messages too. Logs go through
/// the test writer (shown for failing tests), warnings only unless `RUST_LOG` says more.
fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = provider.tracer("saga-e2e");
        opentelemetry::global::set_tracer_provider(provider);
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // The filter applies to the log output only: the OpenTelemetry layer must see the
        // info-level spans that carry the trace context.
        let _ = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            // The services' recent lines by trace id (`GET /admin/logs`), as in production.
            .with(
                saga_service_kit::logs::layer()
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_test_writer()
                    .with_filter(filter),
            )
            .try_init();
    });
}
