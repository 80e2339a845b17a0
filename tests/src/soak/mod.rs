//! The chaos soak (`cargo xtask soak`): thousands of orders at a steady rate through the five
//! services as child processes, while a fault schedule drawn from a seed kills and restarts
//! every service, the broker and PostgreSQL, cuts a service off its database or off the
//! broker (see [`netns`]), republishes delivered messages and injects poison; then it lets the
//! suite drain and checks the books (see [`check`]) and reports (see [`report`]).
//!
//! Faults run one after another, never two at once, so each row of the report says what one
//! fault did. Orders are placed by a client that retries with the same `Idempotency-Key`
//! while the order service is down, as a real client would.

mod check;
mod faults;
mod load;
mod netns;
mod plan;
mod proxy;
mod report;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use saga_stack::{Stack, StackConfig};
use saga_testkit::{PrivateStack, TestStack};
use tokio_util::sync::CancellationToken;

use crate::process::ChildService;
use crate::{Service, Suite, SuiteOptions, eur};

pub use plan::{Fault, FaultKind, Path, PlannedFault, PlannedOrder, service_name};
pub use report::{FaultRecord, Invariant, Report};

/// The services whose second instance is safe on tansu (see [`SoakConfig::standbys`]).
pub const STANDBY_SERVICES: [Service; 2] = [Service::Order, Service::Orchestrator];

/// How a standby instance is started: everything but the consumers. With `assign`
/// membership every instance would consume every partition, so consumers run once.
pub(crate) const STANDBY_ENV: [(&str, &str); 1] = [("APP_COMPONENTS__CONSUMER", "false")];

/// The test-only switch of the payment service that refunds twice (a deliberately broken
/// build): the soak must then fail on the money invariant.
pub const DOUBLE_REFUND_SWITCH: &str = "SAGA_TEST_DOUBLE_REFUND";

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("start the soak's stack: {0}")]
    Stack(#[from] saga_testkit::TestkitError),
    #[error(
        "{0} needs a stack of the soak's own (it restarts the broker or PostgreSQL, or has \
         the broker advertise an address a network namespace reaches)"
    )]
    NeedsOwnStack(&'static str),
    #[error("soak setup: {0}")]
    Setup(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub orders: usize,
    /// Orders placed per second, evenly spaced.
    pub rate: f64,
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    /// Time between the starts of two faults, drawn from this range.
    pub gap: (Duration, Duration),
    /// How long the suite may take to drain after the load before the soak calls it stuck.
    pub drain_timeout: Duration,
    /// The services' consumer fetch wait (per-hop latency floor on tansu).
    pub fetch_wait_max_ms: u32,
    /// Turn on [`DOUBLE_REFUND_SWITCH`] in the payment service.
    pub double_refund: bool,
    /// How many of the slowest sagas the report shows with their timelines.
    pub slowest: usize,
    /// The orchestrator's deadline for each step that can be undone (reserve, charge,
    /// schedule): a stall lasts longer, so the sagas waiting on the stalled participant time
    /// out. Long enough that the other faults alone seldom make a step miss it.
    pub step_deadline: Duration,
    /// Services that run a second, standby instance (no consumers: HTTP API, outbox relay
    /// and, for the orchestrator, the retry and deadline task). See docs/soak.md for why
    /// consumers cannot run twice on tansu.
    pub standbys: Vec<Service>,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            orders: 2_000,
            rate: 10.0,
            seed: 1,
            faults: FaultKind::ALL.to_vec(),
            gap: (Duration::from_secs(5), Duration::from_secs(15)),
            drain_timeout: Duration::from_secs(300),
            fetch_wait_max_ms: 10,
            double_refund: false,
            slowest: 5,
            step_deadline: Duration::from_secs(15),
            standbys: STANDBY_SERVICES.to_vec(),
        }
    }
}

impl SoakConfig {
    /// How long placing the orders takes at the configured rate.
    pub fn load_duration(&self) -> Duration {
        Duration::from_secs_f64(self.orders as f64 / self.rate.max(0.001))
    }
}

/// Runs a soak on a private stack of its own (PostgreSQL, broker, topics, registry in a
/// temporary directory on free ports), torn down afterwards. With `cut-broker` among the
/// faults the participants run in network namespaces of their own and the stack listens on
/// the host's end of their veth pairs ([`netns`]); where namespaces cannot be made, the soak
/// says why in its report and runs without that fault.
pub async fn run_on_private_stack(cfg: &SoakConfig) -> Result<Report, SoakError> {
    let mut cfg = cfg.clone();
    let mut notes = Vec::new();
    let net = if cfg.faults.contains(&FaultKind::CutBroker) {
        match netns::Network::setup(&plan::BROKER_CUT_TARGETS) {
            Ok(net) => {
                notes.push(format!(
                    "{} each ran in a network namespace of their own (for cut-broker); the stack \
                     listened on, and the broker advertised, {}",
                    plan::BROKER_CUT_TARGETS.map(service_name).join(", "),
                    net.host
                ));
                Some(net)
            }
            Err(reason) => {
                let note = format!(
                    "cut-broker SKIPPED: network namespaces are unavailable here ({reason}); \
                     the other faults ran"
                );
                tracing::warn!("{note}");
                notes.push(note);
                cfg.faults.retain(|k| *k != FaultKind::CutBroker);
                None
            }
        }
    } else {
        None
    };
    let started = Instant::now();
    let private = match &net {
        Some(net) => {
            let host = net.host.to_string();
            PrivateStack::start_with(|c| Stack::new(StackConfig { host, ..c })).await?
        }
        None => PrivateStack::start().await?,
    };
    tracing::info!(
        secs = started.elapsed().as_secs_f64(),
        dir = %private.dir().display(),
        "soak stack up"
    );
    let stack = TestStack::from_private(private);
    let mut report = run_in(&stack, &cfg, net.as_ref()).await?;
    report.notes = notes;
    Ok(report)
    // Dropping the stack closes its watchdog's pipe: the watchdog stops it and removes it;
    // then the namespaces go.
}

/// The current base URL of each service (and of its standby): a restarted service listens
/// on a new port.
#[derive(Clone, Default)]
pub(crate) struct Endpoints(Arc<RwLock<EndpointMap>>);

#[derive(Default)]
pub(crate) struct EndpointMap {
    main: HashMap<Service, String>,
    standby: HashMap<Service, String>,
}

impl Endpoints {
    pub(crate) fn refresh(&self, suite: &Suite) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        for service in Service::ALL {
            if suite.is_running(service) {
                map.main.insert(service, suite.url(service));
            }
        }
    }

    pub(crate) fn set_standby(&self, service: Service, url: String) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.standby.insert(service, url);
    }

    pub(crate) fn get(&self, service: Service) -> String {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.main.get(&service).cloned().unwrap_or_default()
    }

    /// The `n`th of the service's instances, round robin (main, standby): a client that
    /// spreads its requests and moves on to the other instance when one fails.
    pub(crate) fn pick(&self, service: Service, n: usize) -> String {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let urls: Vec<&String> = map
            .main
            .get(&service)
            .into_iter()
            .chain(map.standby.get(&service))
            .collect();
        if urls.is_empty() {
            return String::new();
        }
        urls[n % urls.len()].clone()
    }
}

/// Stock each stocked SKU starts with, and credit each customer starts with: more than the
/// whole load can take, so an order meant to be approved is approved.
fn initial_stock(cfg: &SoakConfig) -> i64 {
    3 * cfg.orders as i64 + 10
}

fn initial_credit(cfg: &SoakConfig) -> i64 {
    (3 * plan::PRICES_MINOR.iter().max().copied().unwrap_or(0) + plan::NO_STOCK_PRICE_MINOR)
        * cfg.orders as i64
        + 1_000
}

/// Runs a soak on `stack`. Faults that restart the broker or PostgreSQL, or cut a service off
/// the broker, need a stack of the soak's own ([`run_on_private_stack`]).
pub async fn run(stack: &TestStack, cfg: &SoakConfig) -> Result<Report, SoakError> {
    run_in(stack, cfg, None).await
}

async fn run_in(
    stack: &TestStack,
    cfg: &SoakConfig,
    net: Option<&netns::Network>,
) -> Result<Report, SoakError> {
    if stack.private().is_none()
        && let Some(kind) = cfg.faults.iter().find(|k| k.needs_own_stack())
    {
        return Err(SoakError::NeedsOwnStack(kind.name()));
    }
    if net.is_none() && cfg.faults.contains(&FaultKind::CutBroker) {
        return Err(SoakError::Setup(
            "cut-broker needs the network namespaces run_on_private_stack makes".into(),
        ));
    }
    let pg = proxy::pg_socket(stack.pg_admin_url())
        .ok_or_else(|| SoakError::Setup("the stack's PostgreSQL address".into()))?;
    let broker_port = stack
        .kafka_bootstrap()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| SoakError::Setup("the broker's port".into()))?;
    // A namespaced service reaches the proxies at the host's address, not loopback.
    let bind = IpAddr::V4(net.map_or(Ipv4Addr::LOCALHOST, |n| n.host));
    let mut proxies = HashMap::new();
    let mut database_hosts = HashMap::new();
    for service in Service::ALL {
        let p = proxy::Proxy::start(bind, pg)
            .await
            .map_err(|e| SoakError::Setup(format!("database proxy: {e}")))?;
        database_hosts.insert(service, p.addr.to_string());
        proxies.insert(service, p);
    }
    let mut extra_env = Vec::new();
    for service in plan::STALL_TARGETS {
        if let Some(step) = plan::step_of(service) {
            extra_env.push((
                Service::Orchestrator,
                format!("APP_SAGA__STEP_DEADLINES_MS__{}", step.to_ascii_uppercase()),
                cfg.step_deadline.as_millis().to_string(),
            ));
        }
    }
    if cfg.double_refund {
        extra_env.push((
            Service::Payment,
            DOUBLE_REFUND_SWITCH.to_owned(),
            "1".to_owned(),
        ));
    }
    let setup_started = Instant::now();
    let mut suite = Suite::start_on(
        stack,
        SuiteOptions {
            processes: Service::ALL.to_vec(),
            fetch_wait_max_ms: cfg.fetch_wait_max_ms,
            database_hosts,
            extra_env,
            netns: net.map(netns::Network::placements).unwrap_or_default(),
            ..SuiteOptions::default()
        },
    )
    .await;
    let stock = initial_stock(cfg);
    let credit = initial_credit(cfg);
    for (sku, price) in plan::STOCKED_SKUS.iter().zip(plan::PRICES_MINOR) {
        suite.set_price(sku, eur(price)).await;
        suite.seed_stock(sku, stock).await;
    }
    suite
        .set_price(plan::NO_STOCK_SKU, eur(plan::NO_STOCK_PRICE_MINOR))
        .await;
    suite.seed_stock(plan::NO_STOCK_SKU, 0).await;
    for customer in plan::CUSTOMERS {
        suite.set_credit(customer, eur(credit)).await;
    }
    suite.set_credit(plan::BROKE_CUSTOMER, eur(0)).await;
    tracing::info!(
        secs = setup_started.elapsed().as_secs_f64(),
        "suite started and seeded"
    );

    let endpoints = Endpoints::default();
    endpoints.refresh(&suite);
    let mut standbys = HashMap::new();
    for service in &cfg.standbys {
        let standby = ChildService::spawn_with(&suite, *service, &STANDBY_ENV).await;
        endpoints.set_standby(*service, standby.url.clone());
        standbys.insert(*service, standby);
    }
    let orders = plan::orders(cfg.seed, cfg.orders);
    let shape = plan::Shape {
        step_deadline: cfg.step_deadline,
        standbys: cfg.standbys.clone(),
    };
    let schedule = plan::schedule(cfg.seed, &cfg.faults, cfg.load_duration(), cfg.gap, &shape);
    let load_done = CancellationToken::new();
    let start = Instant::now();
    let start_wall = chrono::Utc::now();
    let load = tokio::spawn(load::run(
        orders,
        cfg.rate,
        endpoints.clone(),
        suite.http().clone(),
        start,
        load_done.clone(),
    ));
    let mut ctx = faults::FaultCtx {
        suite: &mut suite,
        stack,
        proxies: &proxies,
        net,
        broker_port,
        endpoints: &endpoints,
        standbys: &mut standbys,
        seed: cfg.seed,
        poison_keys: Vec::new(),
    };
    let fault_records = faults::run(&mut ctx, &schedule, start, &load_done).await;
    let poison_keys = std::mem::take(&mut ctx.poison_keys);
    let placed = load
        .await
        .map_err(|e| SoakError::Setup(format!("load task: {e}")))?;
    let load_secs = placed
        .iter()
        .filter_map(|o| o.accepted_at_ms)
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    let faults_end = start.elapsed().as_secs_f64();
    tracing::info!(load_secs, faults_end, "load and faults done; draining");

    let drain = check::drain(&suite, &placed, cfg.drain_timeout).await;
    let books = check::Books::read(&suite, &endpoints, &placed).await;
    let invariants = check::invariants(
        &books,
        &placed,
        &drain,
        &poison_keys,
        stock,
        credit,
        &check::Timeouts {
            faults: &fault_records,
            start_wall,
            step_deadline: cfg.step_deadline,
        },
    );
    let report = report::build(report::Inputs {
        cfg,
        start_wall,
        load_secs,
        placed: &placed,
        faults: fault_records,
        schedule: &schedule,
        books: &books,
        drain: &drain,
        invariants,
        suite: &suite,
    })
    .await;
    for (_, mut standby) in standbys {
        standby.kill().await;
    }
    drop(proxies);
    if !report.passed {
        suite.print_log_tails(40);
    }
    suite.stop().await;
    Ok(report)
}
