//! The load: orders placed at a steady rate by a client that keeps trying (same
//! `Idempotency-Key`, so a retry never places a second order) while the order service is
//! down or restarting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_contracts::OrderId;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Endpoints;
use super::plan::PlannedOrder;
use crate::{Service, order_body};

/// How long one order may take to be accepted before the client gives up on it.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(300);
/// Orders being placed at once; beyond that the schedule slips (and the report shows it).
const MAX_IN_FLIGHT: usize = 256;

/// One order as the client saw it.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedOrder {
    #[serde(flatten)]
    pub planned: PlannedOrder,
    pub order_id: Option<OrderId>,
    /// From the start of the load.
    pub sent_at_ms: u64,
    pub accepted_at_ms: Option<u64>,
    /// POSTs until accepted (more than one while the order service was down).
    pub attempts: u32,
    /// Why it was not accepted.
    pub error: Option<String>,
}

pub(crate) async fn run(
    orders: Vec<PlannedOrder>,
    rate: f64,
    endpoints: Endpoints,
    http: reqwest::Client,
    start: Instant,
    done: CancellationToken,
) -> Vec<PlacedOrder> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = Vec::with_capacity(orders.len());
    for (i, order) in orders.into_iter().enumerate() {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (endpoints, http) = (endpoints.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let placed = place(order, &endpoints, &http, start).await;
            drop(slot);
            placed
        }));
    }
    let mut placed = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(p) = task.await {
            placed.push(p);
        }
    }
    done.cancel();
    placed
}

async fn place(
    planned: PlannedOrder,
    endpoints: &Endpoints,
    http: &reqwest::Client,
    start: Instant,
) -> PlacedOrder {
    let body = order_body(planned.customer, &planned.items, planned.country);
    let key = uuid::Uuid::new_v4().to_string();
    let sent = Instant::now();
    let mut placed = PlacedOrder {
        planned,
        order_id: None,
        sent_at_ms: start.elapsed().as_millis() as u64,
        accepted_at_ms: None,
        attempts: 0,
        error: None,
    };
    let mut last_error = String::new();
    while sent.elapsed() < ACCEPT_DEADLINE {
        placed.attempts += 1;
        // Orders alternate between the order service's instances (when it runs a standby),
        // and a retry goes to the other one.
        let instance = placed.planned.index + placed.attempts as usize;
        let url = format!("{}/orders", endpoints.pick(Service::Order, instance));
        let resp = http
            .post(&url)
            .header("Idempotency-Key", &key)
            .json(&body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match resp {
            Ok(resp) if resp.status().is_success() => {
                let text = resp.text().await.unwrap_or_default();
                let id = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["order_id"].as_str().and_then(|s| s.parse().ok()));
                match id {
                    Some(id) => {
                        placed.order_id = Some(id);
                        placed.accepted_at_ms = Some(start.elapsed().as_millis() as u64);
                        return placed;
                    }
                    None => last_error = format!("no order_id in {text}"),
                }
            }
            // A refusal of the request itself (bad input) will not change on retry.
            Ok(resp)
                if resp.status().is_client_error()
                    && resp.status() != reqwest::StatusCode::REQUEST_TIMEOUT
                    && resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                placed.error = Some(format!("{status}: {text}"));
                return placed;
            }
            Ok(resp) => last_error = format!("{}", resp.status()),
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    placed.error = Some(format!(
        "not accepted within {ACCEPT_DEADLINE:?}: {last_error}"
    ));
    placed
}
