//! `cargo xtask demo`: the README's first command. Builds and starts the whole suite, seeds a
//! catalogue, stock and accounts over the services' HTTP APIs, places one order along each
//! path of the saga (approved; out of stock; payment declined; shipping refused), waits for
//! each saga to finish and prints its timeline and side effects. Exits non-zero when any path
//! ends differently from what the saga promises. The stack is left running.
//!
//! Every run uses SKUs and customers of its own (a run id in their names), so the expected
//! stock and balances are exact and the demo can run again on the same databases.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use saga_stack::proof::{check_role_isolation, kafka_roundtrip};
use saga_stack::{SagaService, Stack};
use serde::Deserialize;
use serde_json::json;

/// Longest a saga may take. The orchestrator re-sends an unanswered command after 30 s by
/// default, so even a lost message finishes well within this.
const SAGA_DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
const CURRENCY: &str = "EUR";
/// Destinations the demo can pick for the refused path: the first one shipping does not serve.
const UNSERVED_CANDIDATES: &[&str] = &["JP", "AU", "BR", "ZA", "IN", "CA"];

pub(crate) async fn run(args: &crate::StackArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let stack = args.stack();
    if crate::up_suite(&stack, true).await? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }
    println!();
    if !infra_proof(&stack).await {
        println!("\ndemo FAILED: the infrastructure is not working (see above).");
        return Ok(ExitCode::FAILURE);
    }
    let unserved = UNSERVED_CANDIDATES
        .iter()
        .find(|c| {
            !args
                .served_countries
                .iter()
                .any(|s| s.eq_ignore_ascii_case(c))
        })
        .context("every candidate country is served; pass fewer --served-countries")?;
    let api = Api::new(&stack)?;
    let sagas_started = Instant::now();
    let mut ok = saga_demo(&api, unserved).await?;
    match timeout_demo(&stack, &api).await {
        Ok(good) => ok &= good,
        Err(err) => {
            ok = false;
            println!("   FAILED: {err:#}");
        }
    }
    print_next_steps(&api);
    print_monitoring(&stack);
    println!(
        "\ndemo took {:.1}s: {:.1}s to build and start the suite, {:.1}s for the sagas",
        started.elapsed().as_secs_f64(),
        (sagas_started - started).as_secs_f64(),
        sagas_started.elapsed().as_secs_f64()
    );
    if ok {
        println!("\ndemo passed: every saga path ended as expected. The suite is still running.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\ndemo FAILED (see above; logs: `cargo xtask logs <component>`).");
        Ok(ExitCode::FAILURE)
    }
}

/// The broker carries a keyed message and every role reaches its own database only. Prints
/// one line when all is well, every check when something is not.
async fn infra_proof(stack: &Stack) -> bool {
    let cfg = stack.config();
    let mut ok = true;
    let broker = kafka_roundtrip(&cfg.kafka_bootstrap()).await;
    if let Err(err) = &broker {
        ok = false;
        println!("broker round trip FAILED: {err}");
    }
    let checks = check_role_isolation(cfg).await;
    for check in checks.iter().filter(|c| !c.passed()) {
        ok = false;
        println!(
            "role isolation FAILED: {} on {} with {} password: {:?}",
            check.role, check.database, check.password, check.result
        );
    }
    if ok {
        println!(
            "infrastructure: a keyed message went through the broker; {} role/database checks \
             passed (each service role reaches its own database only, with its own password only)",
            checks.len()
        );
    }
    ok
}

/// How one path must end.
struct Expected {
    order_status: &'static str,
    saga_state: &'static str,
    stock_available: i64,
    stock_reserved: i64,
    credit_minor: i64,
    charged_minor: i64,
    /// `None`: shipping never heard of the order.
    shipment: Option<&'static str>,
}

/// One saga path: what is seeded for it, the order placed, and where it must end.
struct Path {
    title: &'static str,
    sku: String,
    unit_price_minor: i64,
    stock: i64,
    customer: String,
    credit_minor: i64,
    quantity: i64,
    country: String,
    expected: Expected,
}

fn paths(run: &str, unserved: &str) -> Vec<Path> {
    let sku = |name: &str| format!("DEMO-{run}-{name}");
    let customer = |name: &str| format!("demo-{run}-{name}");
    vec![
        Path {
            title: "approved: stock reserved, payment charged, shipment scheduled and dispatched",
            sku: sku("WIDGET"),
            unit_price_minor: 1250,
            stock: 10,
            customer: customer("approved"),
            credit_minor: 100_000,
            quantity: 2,
            country: "GB".into(),
            expected: Expected {
                order_status: "APPROVED",
                saga_state: "completed",
                stock_available: 8,
                stock_reserved: 2,
                credit_minor: 100_000 - 2 * 1250,
                charged_minor: 2 * 1250,
                shipment: Some("dispatched"),
            },
        },
        Path {
            title: "out of stock: 3 wanted, 1 available; nothing to undo",
            sku: sku("RARE"),
            unit_price_minor: 99_900,
            stock: 1,
            customer: customer("out-of-stock"),
            credit_minor: 1_000_000,
            quantity: 3,
            country: "GB".into(),
            expected: Expected {
                order_status: "REJECTED",
                saga_state: "aborted",
                stock_available: 1,
                stock_reserved: 0,
                credit_minor: 1_000_000,
                charged_minor: 0,
                shipment: None,
            },
        },
        Path {
            title: "payment declined: credit 1.00 EUR for 25.00 EUR; the reservation is released",
            sku: sku("GADGET"),
            unit_price_minor: 1250,
            stock: 10,
            customer: customer("declined"),
            credit_minor: 100,
            quantity: 2,
            country: "GB".into(),
            expected: Expected {
                order_status: "REJECTED",
                saga_state: "aborted",
                stock_available: 10,
                stock_reserved: 0,
                credit_minor: 100,
                charged_minor: 0,
                shipment: None,
            },
        },
        Path {
            title: "shipping refused: the payment is refunded and the reservation released",
            sku: sku("GIZMO"),
            unit_price_minor: 1250,
            stock: 10,
            customer: customer("refused"),
            credit_minor: 100_000,
            quantity: 2,
            country: unserved.to_owned(),
            expected: Expected {
                order_status: "REJECTED",
                saga_state: "aborted",
                stock_available: 10,
                stock_reserved: 0,
                credit_minor: 100_000,
                charged_minor: 0,
                shipment: Some("refused"),
            },
        },
    ]
}

async fn saga_demo(api: &Api, unserved: &str) -> anyhow::Result<bool> {
    let run = run_id();
    let paths = paths(&run, unserved);
    println!("seeding run {run}: catalogue prices (order), stock (inventory), credit (payment)");
    seed(api, &paths).await?;

    // All four at once: they touch disjoint SKUs and accounts, so each expectation is exact
    // and the demo takes about as long as one saga.
    let mut placed = Vec::new();
    for p in &paths {
        placed.push((place(api, p).await?, Instant::now()));
    }
    println!(
        "placed {} orders; waiting for their sagas (deadline {}s each)",
        placed.len(),
        SAGA_DEADLINE.as_secs()
    );

    let mut all_ok = true;
    for (i, (p, (order_id, placed_at))) in paths.iter().zip(&placed).enumerate() {
        println!("\n== {}. {}", i + 1, p.title);
        println!(
            "   {} x {} at {} to {} for {} (credit {})",
            p.quantity,
            p.sku,
            money(p.unit_price_minor),
            p.country,
            p.customer,
            money(p.credit_minor)
        );
        match finish(api, p, order_id, *placed_at).await {
            Ok(ok) => all_ok &= ok,
            Err(err) => {
                all_ok = false;
                println!("   FAILED: {err:#}");
            }
        }
    }
    Ok(all_ok)
}

/// Catalogue price, stock and credit for each path.
async fn seed(api: &Api, paths: &[Path]) -> anyhow::Result<()> {
    for p in paths {
        api.put(
            &api.order,
            &format!("/catalog/{}", p.sku),
            json!({"unit_price": {"amount_minor": p.unit_price_minor, "currency": CURRENCY}}),
        )
        .await?;
        api.put(
            &api.inventory,
            &format!("/stock/{}", p.sku),
            json!({"available": p.stock}),
        )
        .await?;
        api.put(
            &api.payment,
            &format!("/accounts/{}", p.customer),
            json!({"credit": {"amount_minor": p.credit_minor, "currency": CURRENCY}}),
        )
        .await?;
    }
    Ok(())
}

/// Place the path's order; its order id.
async fn place(api: &Api, p: &Path) -> anyhow::Result<String> {
    let body = json!({
        "customer_id": p.customer,
        "items": [{"sku": p.sku, "quantity": p.quantity}],
        "shipping_address": {
            "name": "Demo Customer", "line1": "1 Main St", "line2": null,
            "city": "Somewhere", "postal_code": "12345", "country": p.country
        }
    });
    let order: Placed = api.post(&api.order, "/orders", body).await?;
    Ok(order.order_id)
}

/// The fifth path: shipping is stopped, so ScheduleShipment is never answered; past the
/// step's deadline (the local stack sets 8 s) the orchestrator undoes the step and the
/// completed ones. Shipping comes back to answer the undo (and the late action, cancelled).
async fn timeout_demo(stack: &Stack, api: &Api) -> anyhow::Result<bool> {
    let run = run_id();
    let p = Path {
        title: "shipping stopped: schedule_shipment times out; payment refunded, stock released",
        sku: format!("DEMO-{run}-SLOW"),
        unit_price_minor: 1250,
        stock: 10,
        customer: format!("demo-{run}-timeout"),
        credit_minor: 100_000,
        quantity: 2,
        country: "GB".into(),
        expected: Expected {
            order_status: "REJECTED",
            saga_state: "aborted",
            stock_available: 10,
            stock_reserved: 0,
            credit_minor: 100_000,
            charged_minor: 0,
            shipment: Some("cancelled"),
        },
    };
    println!("\n== 5. {}", p.title);
    seed(api, std::slice::from_ref(&p)).await?;
    stack.stop_component("shipping").await?;
    println!("   shipping-service stopped");
    let order_id = place(api, &p).await?;
    let placed_at = Instant::now();
    let deadline = placed_at + SAGA_DEADLINE;
    loop {
        let saga: Option<Saga> = api
            .get_opt(&api.orchestrator, &format!("/sagas/{order_id}"))
            .await?;
        if saga.is_some_and(|s| s.state != "running") {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "saga of {order_id} did not time out in {}s",
                SAGA_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    println!(
        "   timed out after {:.1}s; starting shipping-service again to answer the undo",
        placed_at.elapsed().as_secs_f64()
    );
    stack.up_component("shipping").await?;
    finish(api, &p, &order_id, placed_at).await
}

/// Waits for the order and its saga to end, prints them, and checks the side effects.
async fn finish(api: &Api, p: &Path, order_id: &str, placed_at: Instant) -> anyhow::Result<bool> {
    let deadline = placed_at + SAGA_DEADLINE;
    let (order, saga) = loop {
        let order: Order = api.get(&api.order, &format!("/orders/{order_id}")).await?;
        let saga: Option<Saga> = api
            .get_opt(&api.orchestrator, &format!("/sagas/{order_id}"))
            .await?;
        if let Some(saga) = saga
            && order.status != "PENDING"
            && matches!(saga.state.as_str(), "completed" | "aborted")
        {
            break (order, saga);
        }
        if Instant::now() > deadline {
            bail!(
                "order {order_id} still {} after {}s (`cargo xtask logs orchestrator`)",
                order.status,
                SAGA_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let took = placed_at.elapsed();
    // Dispatch follows OrderApproved on its own consumer: wait while the shipment is on its
    // way to `dispatched` (a refused or cancelled one never gets there).
    let shipment = loop {
        let shipment: Option<Shipment> = api
            .get_opt(&api.shipping, &format!("/shipments/{order_id}"))
            .await?;
        let status = shipment.as_ref().map(|s| s.status.as_str());
        if p.expected.shipment != Some("dispatched")
            || !matches!(status, None | Some("pending" | "scheduled"))
            || Instant::now() > deadline
        {
            break shipment;
        }
        tokio::time::sleep(POLL).await;
    };
    let stock: Stock = api
        .get(&api.inventory, &format!("/stock/{}", p.sku))
        .await?;
    let account: Account = api
        .get(&api.payment, &format!("/accounts/{}", p.customer))
        .await?;

    let e = &p.expected;
    let mut ok = true;
    let mut check = |good: bool| {
        ok &= good;
        if good { "ok" } else { "WRONG" }
    };
    println!(
        "   order {order_id}: {}{} [{}]",
        order.status,
        order
            .rejection_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        check(order.status == e.order_status)
    );
    println!(
        "   saga {}: {} after {:.2}s; completed steps: [{}]{} [{}]",
        saga.saga_id,
        saga.state,
        took.as_secs_f64(),
        saga.completed_steps.join(", "),
        saga.failure_reason
            .as_deref()
            .map(|r| format!("; failure: {r}"))
            .unwrap_or_default(),
        check(saga.state == e.saga_state)
    );
    println!("   console: {}/sagas/{}", api.console, saga.saga_id);
    print_timeline(&saga);
    println!("   side effects:");
    println!(
        "     stock {}: available {} reserved {} (expected {} / {}) [{}]",
        p.sku,
        stock.available,
        stock.reserved,
        e.stock_available,
        e.stock_reserved,
        check(stock.available == e.stock_available && stock.reserved == e.stock_reserved)
    );
    println!(
        "     account {}: credit {} charged {} (expected {} / {}) [{}]",
        p.customer,
        money(account.credit.amount_minor),
        money(account.charged.amount_minor),
        money(e.credit_minor),
        money(e.charged_minor),
        check(
            account.credit.amount_minor == e.credit_minor
                && account.charged.amount_minor == e.charged_minor
        )
    );
    let shipment_line = match &shipment {
        Some(s) => format!(
            "{}{}",
            s.status,
            s.refusal_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        None => "none".to_owned(),
    };
    println!(
        "     shipment: {shipment_line} (expected {}) [{}]",
        e.shipment.unwrap_or("none"),
        check(shipment.as_ref().map(|s| s.status.as_str()) == e.shipment)
    );
    Ok(ok)
}

/// One line per state transition, with the message that caused it and the commands issued.
fn print_timeline(saga: &Saga) {
    println!("   timeline (GET /sagas/{{order_id}} on the orchestrator):");
    let start = saga.timeline.first().map(|t| t.at);
    for t in &saga.timeline {
        let offset = start
            .map(|s| (t.at - s).num_microseconds().unwrap_or(0) as f64 / 1e6)
            .unwrap_or(0.0);
        let from = match (&t.from_state, &t.from_step) {
            (Some(state), Some(step)) => format!("{state}/{step}"),
            (Some(state), None) => state.clone(),
            _ => "-".to_owned(),
        };
        let to = match &t.to_step {
            Some(step) => format!("{}/{step}", t.to_state),
            None => t.to_state.clone(),
        };
        let commands: Vec<String> = t
            .commands
            .iter()
            .map(|c| format!("{} ({})", c.type_name, c.kind))
            .collect();
        println!(
            "     {:>2} +{offset:>6.3}s  {:<22} {from} -> {to}  [{}]{}{}",
            t.seq,
            t.caused_by_type,
            t.outcome,
            if commands.is_empty() {
                String::new()
            } else {
                format!("  sends {}", commands.join(", "))
            },
            t.detail
                .as_deref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        );
    }
}

fn print_next_steps(api: &Api) {
    let o = &api.order;
    let s = &api.orchestrator;
    println!(
        "\nOperator console: {console}  (log in with the admin token: .stack/secrets/admin-token)
  lag per group and partition, sagas and their timelines, dead letters, outbox backlog",
        console = api.console
    );
    println!(
        "\nTry it yourself (the stack keeps running):
  # admin calls (prices, stock, credit) need the stack's admin token
  . .stack/stack.env; AUTH=\"authorization: Bearer $SAGA_ADMIN_TOKEN\"
  # seed a price, stock and credit, then place an order
  curl -s -X PUT {o}/catalog/MUG -H \"$AUTH\" -H 'content-type: application/json' -d '{{\"unit_price\":{{\"amount_minor\":900,\"currency\":\"EUR\"}}}}'
  curl -s -X PUT {inv}/stock/MUG -H \"$AUTH\" -H 'content-type: application/json' -d '{{\"available\":5}}'
  curl -s -X PUT {pay}/accounts/alice -H \"$AUTH\" -H 'content-type: application/json' -d '{{\"credit\":{{\"amount_minor\":5000,\"currency\":\"EUR\"}}}}'
  curl -s -X POST {o}/orders -H 'content-type: application/json' -d '{{\"customer_id\":\"alice\",\"items\":[{{\"sku\":\"MUG\",\"quantity\":1}}],\"shipping_address\":{{\"name\":\"Alice\",\"line1\":\"1 Main St\",\"line2\":null,\"city\":\"Paris\",\"postal_code\":\"75001\",\"country\":\"FR\"}}}}'
  curl -s {o}/orders/ORDER_ID           # the order (PENDING, then APPROVED or REJECTED)
  curl -s {s}/sagas/ORDER_ID            # its saga: state, steps and timeline
  curl -s '{o}/orders?customer_id=alice&consistency_token=TOKEN'
  cargo xtask dlq list                  # dead letters (none expected)
  cargo xtask status                    # every component and its health
  cargo xtask logs orchestrator         # a service's log
  cargo xtask down                      # stop everything",
        inv = api.inventory,
        pay = api.payment,
    );
}

/// Where lag, metrics and alerts are seen (docs/lag.md), when the stack runs them.
fn print_monitoring(stack: &Stack) {
    let env = stack.env();
    println!("\nMonitoring:");
    if let Some(url) = &env.prometheus_url {
        println!("  Prometheus, lag per group:  {url}/graph?g0.expr=kafka_consumergroup_lag_sum");
        println!("  alerts and their state:     {url}/alerts");
        println!("  what Prometheus scrapes:    {url}/targets");
    }
    if let Some(url) = &env.lag_exporter_url {
        println!("  lag exporter (JSON):        {url}/lag");
    }
    if env.prometheus_url.is_none() && env.lag_exporter_url.is_none() {
        println!("  (not running: build lag-exporter and install prometheus)");
    }
}

/// Short, unique enough per run, and valid in a SKU (`[A-Za-z0-9._-]`).
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{millis:x}")
}

/// Minor units of EUR as `12.50 EUR`.
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {CURRENCY}", abs / 100, abs % 100)
}

// ---- the parts of the services' JSON the demo reads ----

#[derive(Deserialize)]
struct Placed {
    order_id: String,
}

#[derive(Deserialize)]
struct Order {
    status: String,
    rejection_reason: Option<String>,
}

#[derive(Deserialize)]
struct Saga {
    saga_id: String,
    state: String,
    completed_steps: Vec<String>,
    failure_reason: Option<String>,
    timeline: Vec<Transition>,
}

#[derive(Deserialize)]
struct Transition {
    seq: i32,
    outcome: String,
    from_state: Option<String>,
    to_state: String,
    from_step: Option<String>,
    to_step: Option<String>,
    caused_by_type: String,
    commands: Vec<IssuedCommand>,
    detail: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
struct IssuedCommand {
    #[serde(rename = "type")]
    type_name: String,
    kind: String,
}

#[derive(Deserialize)]
struct Stock {
    available: i64,
    reserved: i64,
}

#[derive(Deserialize)]
struct MoneyBody {
    amount_minor: i64,
}

#[derive(Deserialize)]
struct Account {
    credit: MoneyBody,
    charged: MoneyBody,
}

#[derive(Deserialize)]
struct Shipment {
    status: String,
    refusal_reason: Option<String>,
}

/// The five services' base URLs and one HTTP client.
struct Api {
    http: reqwest::Client,
    order: String,
    inventory: String,
    payment: String,
    shipping: String,
    orchestrator: String,
    /// The operator console: the demo prints each saga's page there.
    console: String,
}

/// `Authorization: Bearer <admin token>` on every request: the demo seeds prices, stock
/// and credit, which are admin operations; the customer routes ignore the header.
fn admin_headers(cfg: &saga_stack::StackConfig) -> anyhow::Result<reqwest::header::HeaderMap> {
    // SAGA_ADMIN_TOKEN first: the demo may run against services that are not this
    // checkout's stack (docker-compose).
    let token = match std::env::var("SAGA_ADMIN_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token,
        _ => cfg.admin_token().context("read the stack's admin token")?,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(headers)
}

impl Api {
    fn new(stack: &Stack) -> anyhow::Result<Self> {
        let cfg = stack.config();
        let url = |name: &str| {
            SagaService::named(name)
                .map(|s| s.url(cfg))
                .with_context(|| format!("no service {name}"))
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .default_headers(admin_headers(cfg)?)
                .build()?,
            order: url("order")?,
            inventory: url("inventory")?,
            payment: url("payment")?,
            shipping: url("shipping")?,
            orchestrator: url("orchestrator")?,
            console: saga_stack::console_url(cfg),
        })
    }

    async fn put(&self, base: &str, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("PUT {base}{path}"))?;
        check(resp, "PUT", base, path).await.map(drop)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let resp = self
            .http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {base}{path}"))?;
        let resp = check(resp, "POST", base, path).await?;
        resp.json()
            .await
            .with_context(|| format!("POST {base}{path}: body"))
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        self.get_opt(base, path)
            .await?
            .with_context(|| format!("GET {base}{path}: 404"))
    }

    /// `None` on 404.
    async fn get_opt<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let resp = self
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .with_context(|| format!("GET {base}{path}"))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(resp, "GET", base, path).await?;
        Ok(Some(
            resp.json()
                .await
                .with_context(|| format!("GET {base}{path}: body"))?,
        ))
    }
}

/// A non-2xx answer as an error carrying the problem+json body.
async fn check(
    resp: reqwest::Response,
    method: &str,
    base: &str,
    path: &str,
) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    bail!("{method} {base}{path} -> {status}: {body}")
}
