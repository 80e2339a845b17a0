//! Test plumbing: a fresh database per test and the service started in-process on port 0.
//!
//! Postgres (and the registry when the stack runs one) come from `saga-testkit`. Without a
//! registry in the stack, a minimal in-process stand-in of the Confluent calls the codec
//! makes is used, so the HTTP API tests still run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use order_service::{App, Config, OrderSettings, RegistryConfig};
use saga_service_kit::auth::AuthConfig;
use saga_service_kit::config::{DatabaseConfig, HttpConfig};
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_projector: true,
            read_your_writes_timeout_ms: 2_000,
        }
    }
}

/// The admin token the order service under test is started with.
pub const ADMIN_TOKEN: &str = "order-test-admin-token-0123";

/// A client that sends the admin token on every request (customer routes ignore it), so the
/// tests of prices and the rebuild read like the others; `anonymous_client` checks refusals.
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
    let db_url = fresh_database().await;
    let registry = registry_url().await;
    let config = Config {
        http: HttpConfig::default(),
        database: DatabaseConfig::new(db_url),
        kafka: Default::default(),
        registry: RegistryConfig { url: registry },
        relay: Default::default(),
        consumer: Default::default(),
        order: OrderSettings {
            run_http: true,
            run_projector: opts.run_projector,
            run_consumer: false,
            run_relay: false,
            read_your_writes_timeout_ms: opts.read_your_writes_timeout_ms,
            projector_poll_ms: 200,
            ..OrderSettings::default()
        },
        auth: AuthConfig::with_admin_token(ADMIN_TOKEN),
    };
    let app = App::build(config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr().unwrap());
    let pool = app.orders().pool().clone();
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

async fn fresh_database() -> String {
    saga_testkit::TestStack::get()
        .await
        .fresh_database()
        .await
        .url
}

#[derive(Default)]
struct Registry {
    by_schema: HashMap<String, u32>,
    schemas: Vec<String>,
    subjects: HashMap<String, (u32, String)>,
}

async fn registry_url() -> String {
    if let Some(url) = saga_testkit::TestStack::get().await.registry_url() {
        return url.to_owned();
    }
    let state = Arc::new(Mutex::new(Registry::default()));
    let ct = [("content-type", "application/vnd.schemaregistry.v1+json")];
    let router = axum::Router::new()
        .route(
            "/subjects/{subject}/versions",
            post(
                move |State(r): State<Arc<Mutex<Registry>>>,
                      Path(subject): Path<String>,
                      Json(body): Json<Value>| async move {
                    let schema = body["schema"].as_str().unwrap_or_default().to_owned();
                    let mut r = r.lock().unwrap();
                    let next = r.schemas.len() as u32 + 1;
                    let id = *r.by_schema.entry(schema.clone()).or_insert(next);
                    if id == next {
                        r.schemas.push(schema.clone());
                    }
                    r.subjects.insert(subject, (id, schema));
                    (ct, Json(json!({ "id": id })))
                },
            ),
        )
        .route(
            "/schemas/ids/{id}",
            get(
                move |State(r): State<Arc<Mutex<Registry>>>, Path(id): Path<u32>| async move {
                    let r = r.lock().unwrap();
                    let schema = r.schemas.get(id as usize - 1).cloned().unwrap_or_default();
                    (ct, Json(json!({ "schema": schema })))
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
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
