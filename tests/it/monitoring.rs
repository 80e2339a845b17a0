//! The local stack's monitoring, end to end: the whole suite as `cargo xtask up` runs it
//! (services as processes, the lag exporter, Prometheus with deploy/prometheus/alerts.yml)
//! on a private stack. Prometheus scrapes every target; stopping a consumer service makes
//! its group's lag rise in Prometheus and the lag and service-down alerts leave "inactive".
//!
//! Needs the suite's binaries built (`cargo build -p schema-registry -p order-service
//! -p inventory-service -p payment-service -p shipping-service -p orchestrator-service
//! -p lag-exporter`; `cargo xtask test` builds every binary) and Prometheus (installed from
//! Debian's package by the stack when missing).

use std::time::Duration;

use saga_stack::{SAGA_SERVICES, SagaService, SuiteOptions};
use saga_testkit::{PrivateStack, wait_until};
use serde_json::{Value, json};

/// The group of the orchestrator's consumer of order.events: placing an order writes there.
const GROUP: &str = "orchestrator.order.events";

struct Prom {
    http: reqwest::Client,
    url: String,
}

impl Prom {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)
            .expect("Prometheus URL");
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("JSON")
    }

    /// The value of a query returning at most one series (`None` when it has none).
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let body = self.get("/api/v1/query", &[("query", expr)]).await;
        body["data"]["result"]
            .as_array()?
            .first()?
            .pointer("/value/1")?
            .as_str()?
            .parse()
            .ok()
    }

    /// State of every alert of `rule` whose labels contain `label=value`.
    async fn alert_states(&self, rule: &str, label: &str, value: &str) -> Vec<String> {
        let body = self.get("/api/v1/rules", &[("type", "alert")]).await;
        let groups = body["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["name"] == rule)
            .flat_map(|r| r["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"][label] == value)
            .filter_map(|a| a["state"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn place_order(http: &reqwest::Client, order_url: &str, sku: &str) {
    let resp = http
        .post(format!("{order_url}/orders"))
        .json(&json!({
            "customer_id": "monitoring",
            "items": [{"sku": sku, "quantity": 1}],
            "shipping_address": {"name": "M", "line1": "1 Main St", "line2": null,
                "city": "Paris", "postal_code": "75001", "country": "FR"},
        }))
        .send()
        .await
        .expect("POST /orders");
    assert!(
        resp.status().is_success(),
        "POST /orders: {} {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_suite_and_a_stopped_consumer_raises_lag_and_alerts() {
    let opts = SuiteOptions {
        scrape_interval: Duration::from_secs(1),
        lag_poll_interval: Duration::from_secs(1),
        lag_stall_after: Duration::from_secs(5),
        ..SuiteOptions::default()
    };
    let stack = PrivateStack::start_suite(&opts)
        .await
        .expect("start the whole suite on a private stack");
    let cfg = stack.stack().config().clone();
    let env = stack.stack().env();
    let prom = Prom {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        url: env.prometheus_url.clone().expect("SAGA_PROMETHEUS_URL"),
    };
    assert_eq!(env.lag_exporter_url, Some(cfg.lag_exporter_url()));

    // Every target (registry, five services, exporter, Prometheus itself) is scraped and up.
    let expected_targets = SAGA_SERVICES.len() + 3;
    let targets = || async {
        prom.get("/api/v1/targets", &[("state", "active")]).await["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let all_up = wait_until(Duration::from_secs(90), || async {
        let t = targets().await;
        t.len() == expected_targets && t.iter().all(|t| t["health"] == "up")
    })
    .await;
    assert!(
        all_up.is_ok(),
        "not every target up: {:#?}",
        targets().await
    );
    let jobs = prom.scalar("count(up{job=\"saga-services\"} == 1)").await;
    assert_eq!(jobs, Some(6.0));

    // One order with everything running: the orchestrator's group commits on order.events.
    let order_url = SagaService::named("order").unwrap().url(&cfg);
    let admin = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", cfg.admin_token().unwrap())
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let sku = "MONITOR-MUG";
    let resp = admin
        .put(format!("{order_url}/catalog/{sku}"))
        .json(&json!({"unit_price": {"amount_minor": 900, "currency": "EUR"}}))
        .send()
        .await
        .expect("PUT price");
    assert!(resp.status().is_success(), "PUT price: {}", resp.status());
    place_order(&admin, &order_url, sku).await;
    let lag_sum = format!("kafka_consumergroup_lag_sum{{group=\"{GROUP}\"}}");
    let caught_up = wait_until(Duration::from_secs(90), || async {
        prom.scalar(&lag_sum).await == Some(0.0)
            && prom
                .scalar(&format!(
                    "sum(kafka_consumergroup_current_offset{{group=\"{GROUP}\"}})"
                ))
                .await
                .is_some_and(|v| v >= 1.0)
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "{GROUP} never committed with lag 0 in Prometheus"
    );

    // The orchestrator stops: orders keep landing on order.events, nobody consumes them.
    stack
        .stack()
        .stop_component("orchestrator")
        .await
        .expect("stop the orchestrator");
    const ORDERS: usize = 3;
    for _ in 0..ORDERS {
        place_order(&admin, &order_url, sku).await;
    }
    let rose = wait_until(Duration::from_secs(60), || async {
        prom.scalar(&lag_sum)
            .await
            .is_some_and(|v| v >= ORDERS as f64)
    })
    .await;
    assert!(
        rose.is_ok(),
        "lag of {GROUP} did not reach {ORDERS} in Prometheus: {:?}",
        prom.scalar(&lag_sum).await
    );

    // Its lag does not move and is not committed: the exporter says STALLED (after 5 s
    // here), and the ConsumerGroupStalled rule goes pending (its `for:` is 1m), as does
    // ServiceDown for the orchestrator's target.
    let active = |states: Vec<String>| states.iter().any(|s| s == "pending" || s == "firing");
    let alerted = wait_until(Duration::from_secs(60), || async {
        active(
            prom.alert_states("ConsumerGroupStalled", "group", GROUP)
                .await,
        )
    })
    .await;
    assert!(
        alerted.is_ok(),
        "ConsumerGroupStalled for {GROUP}: {:?}; status {:?}",
        prom.alert_states("ConsumerGroupStalled", "group", GROUP)
            .await,
        prom.get(
            "/api/v1/query",
            &[(
                "query",
                &format!("kafka_consumergroup_status{{group=\"{GROUP}\"}} == 1")
            )]
        )
        .await["data"]["result"]
    );
    let down_alerted = wait_until(Duration::from_secs(30), || async {
        active(
            prom.alert_states("ServiceDown", "service", "orchestrator")
                .await,
        )
    })
    .await;
    assert!(
        down_alerted.is_ok(),
        "ServiceDown for the orchestrator: {:?}",
        prom.alert_states("ServiceDown", "service", "orchestrator")
            .await
    );
    // Lag only grows while it is away.
    assert!(
        prom.scalar(&lag_sum)
            .await
            .is_some_and(|v| v >= ORDERS as f64)
    );

    // Back again: it consumes the backlog and the lag in Prometheus returns to 0.
    stack
        .stack()
        .up_component("orchestrator")
        .await
        .expect("restart the orchestrator");
    let drained = wait_until(Duration::from_secs(90), || async {
        prom.scalar(&lag_sum).await == Some(0.0)
    })
    .await;
    assert!(drained.is_ok(), "lag of {GROUP} did not return to 0");

    stack.shutdown().await.expect("stop the stack");
}
