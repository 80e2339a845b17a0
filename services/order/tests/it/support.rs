//! Test plumbing: a fresh database per test and the service started in-process on port 0,
//! against the test stack's PostgreSQL and schema registry (`saga-testkit`). The consumer
//! and the relay are off: these tests drive the HTTP API and call the service directly.

use std::time::Duration;

use order_service::{App, Config, OrderSettings};
use saga_service_kit::app::Components;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub orders: order_service::service::Orders,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

pub struct Options {
    pub run_projector: bool,
    pub read_your_writes_timeout_ms: u64,
    pub max_streams: usize,
    pub snapshot_every: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_projector: true,
            read_your_writes_timeout_ms: 2_000,
            max_streams: 1_000,
            snapshot_every: order_service::snapshot::DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// The admin token the order service under test is started with.
pub const ADMIN_TOKEN: &str = "order-test-admin-token-0123";

/// A client that sends the admin token on every request (customer routes ignore it), so the
/// tests of prices and the rebuild read like the others; refusals are checked with a plain
/// client.
fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub async fn start() -> TestApp {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> TestApp {
    let stack = saga_testkit::TestStack::get().await;
    let db_url = stack.fresh_database().await.url;
    let registry = stack
        .registry_url()
        .expect("the order service tests need the test stack's schema registry");
    let config: Config = serde_json::from_value(json!({
        "database": {"url": db_url},
        "registry": {"url": registry},
        "auth": {"admin_token": ADMIN_TOKEN},
    }))
    .expect("test config");
    let config = Config {
        runtime: saga_runtime::RuntimeConfig {
            components: Components {
                http: true,
                consumer: false,
                relay: false,
            },
            ..config.runtime
        },
        order: OrderSettings {
            run_projector: opts.run_projector,
            read_your_writes_timeout_ms: opts.read_your_writes_timeout_ms,
            projector_poll_ms: 200,
            max_streams: opts.max_streams,
            snapshot_every: opts.snapshot_every,
            ..OrderSettings::default()
        },
    };
    let app = App::build(config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let pool = app.pool().clone();
    let orders = app.orders().clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        app.run(token).await.expect("app runs");
    });
    TestApp {
        base,
        pool,
        client: admin_client(),
        orders,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn put_price(&self, sku: &str, amount_minor: i64, currency: &str) {
        let r = self
            .client
            .put(self.url(&format!("/catalog/{sku}")))
            .json(&json!({ "unit_price": { "amount_minor": amount_minor, "currency": currency } }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url("/orders")).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

pub fn order_body(customer: &str, items: &[(&str, i64)]) -> Value {
    json!({
        "customer_id": customer,
        "items": items.iter().map(|(sku, q)| json!({ "sku": sku, "quantity": q })).collect::<Vec<_>>(),
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "1 Analytical St", "city": "London",
            "postal_code": "N1 1AA", "country": "GB"
        }
    })
}

/// Poll `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
