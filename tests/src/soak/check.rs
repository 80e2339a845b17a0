//! After the load: drain, read the books from the services' APIs and databases, and check
//! the invariants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use saga_contracts::OrderId;
use serde::Serialize;
use uuid::Uuid;

use super::Endpoints;
use super::load::PlacedOrder;
use super::plan;
use super::report::{FaultRecord, Invariant};
use crate::{AccountView, OrderView, Service, StockView, Suite};

/// How the suite drained after the load.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    pub drained: bool,
    pub secs: f64,
    /// The last reading: consumer lag, undelivered outbox rows, sagas in flight, sagas.
    pub lag: i64,
    pub outbox_pending: i64,
    pub sagas_in_flight: i64,
    pub sagas: i64,
}

async fn scalar(suite: &Suite, service: Service, sql: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).fetch_one(suite.pool(service)).await
}

async fn drain_state(suite: &Suite) -> Result<(i64, i64, i64, i64), String> {
    let mut outbox = 0;
    for service in Service::ALL {
        outbox += scalar(
            suite,
            service,
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL",
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    let in_flight = scalar(
        suite,
        Service::Orchestrator,
        "SELECT count(*) FROM sagas WHERE state NOT IN ('completed', 'aborted', 'incident')",
    )
    .await
    .map_err(|e| e.to_string())?;
    let sagas = scalar(suite, Service::Orchestrator, "SELECT count(*) FROM sagas")
        .await
        .map_err(|e| e.to_string())?;
    let lag = suite.lag().await;
    Ok((lag, outbox, in_flight, sagas))
}

/// Waits until consumer lag is 0, every outbox is empty, every accepted order has a saga and
/// none is in flight; gives up after `timeout` without reaching that.
pub(crate) async fn drain(suite: &Suite, placed: &[PlacedOrder], timeout: Duration) -> Drain {
    let accepted = placed.iter().filter(|o| o.order_id.is_some()).count() as i64;
    let started = Instant::now();
    let mut last = (i64::MAX, i64::MAX, i64::MAX, 0);
    loop {
        match drain_state(suite).await {
            Ok(state) => {
                last = state;
                let (lag, outbox, in_flight, sagas) = state;
                if lag == 0 && outbox == 0 && in_flight == 0 && sagas >= accepted {
                    break;
                }
            }
            Err(e) => tracing::warn!(error = %e, "drain: read state"),
        }
        if started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (lag, outbox_pending, sagas_in_flight, sagas) = last;
    Drain {
        drained: lag == 0 && outbox_pending == 0 && sagas_in_flight == 0 && sagas >= accepted,
        secs: started.elapsed().as_secs_f64(),
        lag,
        outbox_pending,
        sagas_in_flight,
        sagas,
    }
}

/// A saga as the orchestrator's table has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SagaRow {
    pub order_id: Uuid,
    pub state: String,
    pub failure_reason: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub order_id: Uuid,
    pub customer_id: Option<String>,
    pub status: String,
    pub amount_minor: Option<i64>,
    pub refunded_minor: Option<i64>,
}

/// Everything the checks read, once, after the drain.
pub struct Books {
    /// GET /orders/{id} of every accepted order (`None`: the order service does not know it).
    pub orders: HashMap<OrderId, Option<OrderView>>,
    pub sagas: HashMap<Uuid, SagaRow>,
    pub saga_count: i64,
    pub stock: BTreeMap<&'static str, Option<StockView>>,
    pub accounts: BTreeMap<&'static str, Option<AccountView>>,
    /// inventory: (order, status); units held by `reserved` reservations per SKU.
    pub reservations: HashMap<Uuid, String>,
    pub reserved_lines: HashMap<String, i64>,
    pub payments: HashMap<Uuid, PaymentRow>,
    /// shipping: (order, status); ShipmentDispatched messages per order.
    pub shipments: HashMap<Uuid, String>,
    pub dispatched_messages: HashMap<Uuid, i64>,
    /// OrderPlaced events per order in the order service's event store.
    pub placed_events: HashMap<Uuid, i64>,
    /// The dead-letter topic: (key, source topic, error kind).
    pub dead_letters: Vec<(String, String, String)>,
    /// The orchestrator's `timed_out` transitions, by order: when, and the reason.
    pub timeouts: HashMap<Uuid, (DateTime<Utc>, String)>,
    /// What could not be read (each makes an invariant fail).
    pub read_errors: Vec<String>,
}

impl Books {
    pub(crate) async fn read(
        suite: &Suite,
        endpoints: &Endpoints,
        placed: &[PlacedOrder],
    ) -> Books {
        let mut errors = Vec::new();
        let http = suite.http();
        let order_url = endpoints.get(Service::Order);
        let ids: Vec<OrderId> = placed.iter().filter_map(|o| o.order_id).collect();
        let orders: HashMap<OrderId, Option<OrderView>> = futures::stream::iter(ids)
            .map(|id| {
                let url = format!("{order_url}/orders/{id}");
                async move {
                    let view = match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => r.json::<OrderView>().await.ok(),
                        _ => None,
                    };
                    (id, view)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;

        let sagas: Vec<SagaRow> =
            sqlx::query_as("SELECT order_id, state, failure_reason, finished_at FROM sagas")
                .fetch_all(suite.pool(Service::Orchestrator))
                .await
                .unwrap_or_else(|e| {
                    errors.push(format!("sagas: {e}"));
                    Vec::new()
                });
        let saga_count = sagas.len() as i64;
        let sagas = sagas.into_iter().map(|s| (s.order_id, s)).collect();

        let mut stock = BTreeMap::new();
        for sku in plan::STOCKED_SKUS.iter().chain([&plan::NO_STOCK_SKU]) {
            let url = format!("{}/stock/{sku}", endpoints.get(Service::Inventory));
            stock.insert(*sku, get_json(http, &url).await);
        }
        let mut accounts = BTreeMap::new();
        for customer in plan::CUSTOMERS.iter().chain([&plan::BROKE_CUSTOMER]) {
            let url = format!("{}/accounts/{customer}", endpoints.get(Service::Payment));
            accounts.insert(*customer, get_json(http, &url).await);
        }

        let inv = suite.pool(Service::Inventory);
        let reservations: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT order_id, status FROM reservations")
                .fetch_all(inv)
                .await
                .unwrap_or_else(|e| {
                    errors.push(format!("reservations: {e}"));
                    Vec::new()
                });
        let reserved_lines: Vec<(String, i64)> = sqlx::query_as(
            "SELECT l.sku, sum(l.quantity)::bigint FROM reservation_lines l
             JOIN reservations r USING (order_id) WHERE r.status = 'reserved' GROUP BY l.sku",
        )
        .fetch_all(inv)
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("reservation_lines: {e}"));
            Vec::new()
        });
        let payments: Vec<PaymentRow> = sqlx::query_as(
            "SELECT order_id, customer_id, status, amount_minor::bigint AS amount_minor,
                    refunded_minor::bigint AS refunded_minor FROM payments",
        )
        .fetch_all(suite.pool(Service::Payment))
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("payments: {e}"));
            Vec::new()
        });
        let ship = suite.pool(Service::Shipping);
        let shipments: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT order_id, status FROM shipments")
                .fetch_all(ship)
                .await
                .unwrap_or_else(|e| {
                    errors.push(format!("shipments: {e}"));
                    Vec::new()
                });
        let dispatched: Vec<(String, i64)> = sqlx::query_as(
            "SELECT message_key, count(*) FROM outbox
             WHERE message_type = 'ShipmentDispatched' GROUP BY message_key",
        )
        .fetch_all(ship)
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("shipping outbox: {e}"));
            Vec::new()
        });
        let placed_events: Vec<(String, i64)> = sqlx::query_as(
            "SELECT message_key, count(*) FROM outbox
             WHERE message_type = 'OrderPlaced' GROUP BY message_key",
        )
        .fetch_all(suite.pool(Service::Order))
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("order outbox: {e}"));
            Vec::new()
        });
        let timeouts: Vec<(Uuid, DateTime<Utc>, Option<String>)> = sqlx::query_as(
            "SELECT s.order_id, t.at, t.detail FROM saga_transitions t
             JOIN sagas s USING (saga_id) WHERE t.outcome = 'timed_out'",
        )
        .fetch_all(suite.pool(Service::Orchestrator))
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("saga_transitions: {e}"));
            Vec::new()
        });
        let dead_letters = {
            let kafka = suite.kafka.clone();
            tokio::task::spawn_blocking(move || read_dead_letters(&kafka))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .unwrap_or_else(|e| {
                    errors.push(format!("dead letters: {e}"));
                    Vec::new()
                })
        };
        let by_key = |rows: Vec<(String, i64)>| {
            rows.into_iter()
                .filter_map(|(k, n)| Some((k.parse::<Uuid>().ok()?, n)))
                .collect::<HashMap<_, _>>()
        };
        Books {
            orders,
            sagas,
            saga_count,
            stock,
            accounts,
            reservations: reservations.into_iter().collect(),
            reserved_lines: reserved_lines.into_iter().collect(),
            payments: payments.into_iter().map(|p| (p.order_id, p)).collect(),
            shipments: shipments.into_iter().collect(),
            dispatched_messages: by_key(dispatched),
            placed_events: by_key(placed_events),
            dead_letters,
            timeouts: timeouts
                .into_iter()
                .map(|(id, at, detail)| (id, (at, detail.unwrap_or_default())))
                .collect(),
            read_errors: errors,
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Option<T> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Every record on the dead-letter topic: (key, `dlq.source.topic`, `dlq.kind`).
fn read_dead_letters(
    kafka: &saga_kafka::KafkaConfig,
) -> Result<Vec<(String, String, String)>, String> {
    use rdkafka::message::Headers as _;
    let mut config = kafka.client_config();
    config
        .set("group.id", format!("soak-dlq-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let topic = kafka.topic(saga_kafka::topics::DEAD_LETTERS);
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in 0..saga_kafka::DEFAULT_PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if high > low {
            tpl.add_partition_offset(&topic, p, rdkafka::Offset::Offset(low))
                .map_err(|e| e.to_string())?;
            remaining.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.map_err(|e| e.to_string())?;
        let header = |name: &str| {
            msg.headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default()
        };
        out.push((
            msg.key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            header(saga_consumer::dead_letters::SOURCE_TOPIC),
            header(saga_consumer::dead_letters::KIND),
        ));
        if remaining
            .get(&msg.partition())
            .is_some_and(|high| msg.offset() + 1 >= *high)
        {
            remaining.remove(&msg.partition());
        }
    }
    if !remaining.is_empty() {
        return Err(format!(
            "partitions {:?} not read to the end",
            remaining.keys()
        ));
    }
    Ok(out)
}

/// The outcome an order reached, by its status, rejection reason and saga.
pub fn outcome(order: Option<&OrderView>, saga: Option<&SagaRow>) -> &'static str {
    if saga.is_some_and(|s| s.state == "incident") {
        return "incident";
    }
    let Some(order) = order else {
        return "unknown";
    };
    match order.status.as_str() {
        "APPROVED" => "approved",
        "REJECTED" => {
            let reason = order
                .rejection_reason
                .as_deref()
                .unwrap_or_default()
                .to_lowercase();
            // First: a deadline's reason names the step (`step charge_payment timed out`),
            // which would read as a business refusal below.
            if reason.contains("timed out") || reason.contains("deadline passed") {
                "timed_out"
            } else if reason.contains("stock") {
                "out_of_stock"
            } else if reason.contains("payment") || reason.contains("declined") {
                "declined"
            } else if reason.contains("ship") {
                "shipping_refused"
            } else {
                "rejected_other"
            }
        }
        _ => "pending",
    }
}

/// What the timed-out checks need besides the books: the faults as they ran, when the load
/// started (fault offsets are from there) and the step deadline the orchestrator ran with.
pub(crate) struct Timeouts<'a> {
    pub faults: &'a [FaultRecord],
    pub start_wall: DateTime<Utc>,
    pub step_deadline: Duration,
}

/// The saga steps that have a deadline, each answered by one participant.
const DEADLINE_STEPS: [(&str, &str); 3] = [
    ("reserve_stock", "inventory"),
    ("charge_payment", "payment"),
    ("schedule_shipment", "shipping"),
];

/// How long after a fault ended its effect may still hold a step up (a restarted process
/// reconnecting, the backlog it left).
const FAULT_AFTERMATH: Duration = Duration::from_secs(10);

fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// A saga that timed out, and the fault that explains why its step got no answer in time.
#[derive(Debug, Clone, Serialize)]
pub struct TimedOut {
    pub order_id: Uuid,
    /// The step its reason names.
    pub step: Option<&'static str>,
    pub at: Option<DateTime<Utc>>,
    pub reason: String,
    /// Kind and target of the fault, e.g. `stall shipping`: one that kept the step's
    /// participant (or the orchestrator, the broker, PostgreSQL) from answering while the step
    /// waited. `None`: nothing explains it.
    pub explained_by: Option<String>,
}

/// Every accepted order whose saga timed out, with what explains it. A stall of the step's
/// participant is preferred as the explanation when several faults overlap.
pub(crate) fn timed_out(books: &Books, t: &Timeouts<'_>) -> Vec<TimedOut> {
    let mut out = Vec::new();
    for (id, view) in &books.orders {
        let saga = books.sagas.get(id.as_uuid());
        if outcome(view.as_ref(), saga) != "timed_out" {
            continue;
        }
        let transition = books.timeouts.get(id.as_uuid());
        let reason = transition
            .map(|(_, r)| r.clone())
            .or_else(|| view.as_ref().and_then(|v| v.rejection_reason.clone()))
            .unwrap_or_default();
        let step = DEADLINE_STEPS
            .iter()
            .find(|(step, _)| reason.contains(step));
        let at = transition.map(|(at, _)| *at);
        let explained_by = step.zip(at).and_then(|((_, participant), at)| {
            let window_start = at - delta(t.step_deadline + Duration::from_secs(1));
            let mut candidates: Vec<&FaultRecord> = t
                .faults
                .iter()
                .filter(|f| {
                    let start = t.start_wall + delta(Duration::from_millis(f.started_at_ms));
                    let end = t.start_wall
                        + delta(Duration::from_millis(f.ended_at_ms) + FAULT_AFTERMATH);
                    start <= at && end >= window_start
                })
                .filter(|f| match (f.kind, f.target) {
                    ("stall", Some(target)) => target == *participant,
                    ("kill-service" | "cut-network" | "cut-broker", Some(target)) => {
                        target == *participant || target == "orchestrator"
                    }
                    ("kill-broker" | "restart-postgres", _) => true,
                    _ => false,
                })
                .collect();
            candidates.sort_by_key(|f| f.kind != "stall");
            candidates.first().map(|f| {
                format!("{} {}", f.kind, f.target.unwrap_or_default())
                    .trim()
                    .to_owned()
            })
        });
        out.push(TimedOut {
            order_id: *id.as_uuid(),
            step: step.map(|(s, _)| *s),
            at,
            reason,
            explained_by,
        });
    }
    out.sort_by_key(|t| t.at);
    out
}

fn check(name: &'static str, what: &'static str, problems: Vec<String>) -> Invariant {
    Invariant::new(name, what, problems)
}

/// Every invariant, each PASS or FAIL with what broke it (the first problems).
pub(crate) fn invariants(
    books: &Books,
    placed: &[PlacedOrder],
    drain: &Drain,
    poison_keys: &[String],
    initial_stock: i64,
    initial_credit: i64,
    timeouts: &Timeouts<'_>,
) -> Vec<Invariant> {
    let mut out = Vec::new();
    let timed_out = timed_out(books, timeouts);
    let explained: HashMap<Uuid, &TimedOut> = timed_out
        .iter()
        .filter(|t| t.explained_by.is_some())
        .map(|t| (t.order_id, t))
        .collect();
    let accepted: Vec<(&PlacedOrder, OrderId)> = placed
        .iter()
        .filter_map(|o| o.order_id.map(|id| (o, id)))
        .collect();
    let accepted_ids: HashSet<Uuid> = accepted.iter().map(|(_, id)| *id.as_uuid()).collect();
    let approved: Vec<&OrderView> = books
        .orders
        .values()
        .flatten()
        .filter(|o| o.status == "APPROVED")
        .collect();
    let approved_ids: HashSet<Uuid> = approved
        .iter()
        .filter_map(|o| o.order_id.parse().ok())
        .collect();

    out.push(check(
        "every_order_accepted",
        "every order the client placed was accepted (202) in the end, retrying while the order service was down",
        placed
            .iter()
            .filter(|o| o.order_id.is_none())
            .map(|o| {
                format!(
                    "order #{}: {}",
                    o.planned.index,
                    o.error.as_deref().unwrap_or("?")
                )
            })
            .collect(),
    ));

    out.push(check(
        "drained",
        "after the load: consumer lag 0, every outbox delivered, no saga in flight",
        if drain.drained {
            Vec::new()
        } else {
            vec![format!(
                "after {:.0} s: lag {}, undelivered outbox rows {}, sagas in flight {}, sagas {} for {} accepted orders",
                drain.secs,
                drain.lag,
                drain.outbox_pending,
                drain.sagas_in_flight,
                drain.sagas,
                accepted.len()
            )]
        },
    ));

    let mut problems = books.read_errors.clone();
    for (_, id) in &accepted {
        let order = books.orders.get(id).and_then(Option::as_ref);
        let saga = books.sagas.get(id.as_uuid());
        let ok = matches!(
            (
                order.map(|o| o.status.as_str()),
                saga.map(|s| s.state.as_str()),
            ),
            (_, Some("incident"))
                | (Some("APPROVED"), Some("completed"))
                | (Some("REJECTED"), Some("aborted"))
        );
        if !ok {
            problems.push(format!(
                "{id}: order {}, saga {}",
                order.map_or("missing", |o| o.status.as_str()),
                saga.map_or("missing", |s| s.state.as_str())
            ));
        }
    }
    if books.saga_count != accepted.len() as i64 {
        problems.push(format!(
            "{} sagas for {} accepted orders",
            books.saga_count,
            accepted.len()
        ));
    }
    out.push(check(
        "every_saga_ended",
        "every accepted order is APPROVED with its saga completed or REJECTED with its saga aborted (or an incident, listed); one saga per order",
        problems,
    ));

    let mut problems = Vec::new();
    for (placed, id) in &accepted {
        let got = outcome(
            books.orders.get(id).and_then(Option::as_ref),
            books.sagas.get(id.as_uuid()),
        );
        // A timeout is the one outcome a fault may cause: when one kept the step's
        // participant from answering within the deadline (a stall, above all).
        let excused = got == "timed_out" && explained.contains_key(id.as_uuid());
        if got != placed.planned.path.name() && got != "incident" && !excused {
            let why = if got == "timed_out" {
                ", and no fault kept its step's participant from answering"
            } else {
                ""
            };
            problems.push(format!(
                "{id} (#{}): meant {}, got {got}{why}",
                placed.planned.index,
                placed.planned.path.name()
            ));
        }
    }
    out.push(check(
        "every_order_took_its_path",
        "each order ended on the path its stock, credit and country call for, or timed out while a fault kept its step's participant from answering (no fault changes a business outcome otherwise)",
        problems,
    ));

    // Timed out: rejected with a reason naming the step, the saga aborted, and nothing left
    // behind (the late action, applied after the undo or refused by its tombstone, changed
    // nothing). And each stall that had the load running past its deadline timed some out.
    let mut problems = Vec::new();
    for t in &timed_out {
        let id = t.order_id;
        if t.step.is_none() {
            problems.push(format!("{id}: reason names no step: {:?}", t.reason));
        }
        match books.sagas.get(&id).map(|s| s.state.as_str()) {
            Some("aborted") => {}
            other => problems.push(format!(
                "{id}: timed out, saga {}",
                other.unwrap_or("missing")
            )),
        }
        if books.reservations.get(&id).map(String::as_str) == Some("reserved") {
            problems.push(format!("{id}: timed out, stock still reserved"));
        }
        if let Some(p) = books.payments.get(&id)
            && p.status == "charged"
        {
            problems.push(format!("{id}: timed out, still charged"));
        }
        if let Some(status) = books.shipments.get(&id)
            && matches!(status.as_str(), "scheduled" | "dispatched")
        {
            problems.push(format!("{id}: timed out, shipment {status}"));
        }
    }
    let load_end_ms = placed
        .iter()
        .filter_map(|o| o.accepted_at_ms)
        .max()
        .unwrap_or(0);
    for f in timeouts.faults.iter().filter(|f| f.kind == "stall") {
        let Some(participant) = f.target else {
            continue;
        };
        let Some((step, _)) = DEADLINE_STEPS.iter().find(|(_, p)| *p == participant) else {
            continue;
        };
        let by_it = format!("stall {participant}");
        let busy = f.started_at_ms + timeouts.step_deadline.as_millis() as u64 <= load_end_ms;
        let n = timed_out
            .iter()
            .filter(|t| t.step == Some(step) && t.explained_by.as_deref() == Some(by_it.as_str()))
            .count();
        if busy && n == 0 {
            problems.push(format!(
                "{} at {:.1} s: orders were placed past its deadline, yet no saga timed out at {step}",
                f.description,
                f.started_at_ms as f64 / 1000.0
            ));
        }
    }
    out.push(check(
        "timed_out_left_nothing",
        "every timed-out order is REJECTED with a reason naming its step and its saga aborted, with no reservation, charge or shipment left; every stall during the load timed sagas out",
        problems,
    ));

    // Stock: per SKU initial = available + reserved, reserved = units of approved orders =
    // units held by reserved reservations in the ledger.
    let mut held: HashMap<&str, i64> = HashMap::new();
    for o in &approved {
        for line in &o.items {
            *held.entry(line.sku.as_str()).or_default() += i64::from(line.quantity);
        }
    }
    let mut problems = Vec::new();
    for (sku, view) in &books.stock {
        let initial = if *sku == plan::NO_STOCK_SKU {
            0
        } else {
            initial_stock
        };
        let Some(s) = view else {
            problems.push(format!("{sku}: no stock row"));
            continue;
        };
        let approved_units = held.get(sku).copied().unwrap_or(0);
        let ledger = books.reserved_lines.get(*sku).copied().unwrap_or(0);
        if s.available + s.reserved != initial
            || s.reserved != approved_units
            || ledger != s.reserved
        {
            problems.push(format!(
                "{sku}: initial {initial}, available {} + reserved {} = {}; approved orders hold {approved_units}; reservation ledger {ledger}",
                s.available,
                s.reserved,
                s.available + s.reserved
            ));
        }
    }
    out.push(check(
        "stock_conserved",
        "per SKU: initial = available + reserved, reserved = units of approved orders = the reservation ledger",
        problems,
    ));

    // Money: per customer initial = credit + charged, charged = approved totals = charged
    // ledger rows; every refunded payment refunded exactly its charge, and exactly the
    // charged orders that were not approved are refunded.
    let mut cost: HashMap<&str, i64> = HashMap::new();
    for o in &approved {
        *cost.entry(o.customer_id.as_str()).or_default() += o.total.amount_minor;
    }
    let mut ledger: HashMap<&str, i64> = HashMap::new();
    for p in books.payments.values().filter(|p| p.status == "charged") {
        *ledger
            .entry(p.customer_id.as_deref().unwrap_or_default())
            .or_default() += p.amount_minor.unwrap_or(0);
    }
    let mut problems = Vec::new();
    for (customer, view) in &books.accounts {
        let initial = if *customer == plan::BROKE_CUSTOMER {
            0
        } else {
            initial_credit
        };
        let Some(a) = view else {
            problems.push(format!("{customer}: no account"));
            continue;
        };
        let (credit, charged) = (a.credit.amount_minor, a.charged.amount_minor);
        let should = cost.get(customer).copied().unwrap_or(0);
        let rows = ledger.get(customer).copied().unwrap_or(0);
        if credit + charged != initial || charged != should || rows != charged || credit < 0 {
            problems.push(format!(
                "{customer}: initial {initial}, credit {credit} + charged {charged} = {}; approved orders cost {should}; charged payments {rows}",
                credit + charged
            ));
        }
    }
    for p in books.payments.values() {
        let approved = approved_ids.contains(&p.order_id);
        match p.status.as_str() {
            "refunded" if approved => {
                problems.push(format!("{}: approved but refunded", p.order_id))
            }
            "refunded" if p.refunded_minor != p.amount_minor => problems.push(format!(
                "{}: charged {:?}, refunded {:?}",
                p.order_id, p.amount_minor, p.refunded_minor
            )),
            "charged" if !approved => problems.push(format!(
                "{}: charged but not approved, never refunded",
                p.order_id
            )),
            _ => {}
        }
    }
    out.push(check(
        "money_conserved",
        "per customer: initial = credit + charged, charged = totals of approved orders = the payment ledger; refunds exactly once, exactly for charged orders that were rejected",
        problems,
    ));

    let mut problems = Vec::new();
    for id in &approved_ids {
        match books.shipments.get(id).map(String::as_str) {
            Some("dispatched") => {}
            other => problems.push(format!(
                "{id}: approved, shipment {}",
                other.unwrap_or("missing")
            )),
        }
    }
    for (id, status) in &books.shipments {
        if status == "dispatched" && !approved_ids.contains(id) {
            problems.push(format!("{id}: dispatched but not approved"));
        }
    }
    for (id, n) in &books.dispatched_messages {
        if *n != 1 || !approved_ids.contains(id) {
            problems.push(format!(
                "{id}: {n} ShipmentDispatched messages (approved: {})",
                approved_ids.contains(id)
            ));
        }
    }
    for id in &approved_ids {
        if !books.dispatched_messages.contains_key(id) {
            problems.push(format!("{id}: approved, never announced dispatched"));
        }
    }
    out.push(check(
        "shipments_exactly_for_approved",
        "a dispatched shipment for every approved order and for no other, each announced dispatched exactly once",
        problems,
    ));

    let mut problems = Vec::new();
    for id in &accepted_ids {
        if !books.reservations.contains_key(id) {
            problems.push(format!("{id}: no reservation row (the saga's first step)"));
        }
        match books.placed_events.get(id) {
            Some(1) => {}
            n => problems.push(format!(
                "{id}: {} OrderPlaced events",
                n.copied().unwrap_or(0)
            )),
        }
    }
    for (ledger, ids) in [
        (
            "reservations",
            books.reservations.keys().collect::<Vec<_>>(),
        ),
        ("payments", books.payments.keys().collect()),
        ("shipments", books.shipments.keys().collect()),
        ("sagas", books.sagas.keys().collect()),
    ] {
        for id in ids {
            if !accepted_ids.contains(id) {
                problems.push(format!("{ledger}: row for {id}, which no client placed"));
            }
        }
    }
    out.push(check(
        "one_ledger_row_per_order",
        "one OrderPlaced, one saga, one reservation per accepted order; payment and shipment rows only for accepted orders (each ledger is keyed by order)",
        problems,
    ));

    let poison: HashSet<&str> = poison_keys.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for (key, topic, kind) in &books.dead_letters {
        if !poison.contains(key.as_str()) {
            problems.push(format!(
                "dead letter not injected: key {key}, from {topic} ({kind})"
            ));
        }
    }
    let lettered: HashSet<&str> = books
        .dead_letters
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    for key in &poison {
        if !lettered.contains(key) {
            problems.push(format!("poison {key} was not dead-lettered"));
        }
    }
    out.push(check(
        "dead_letters_only_poison",
        "every injected poison record is dead-lettered, and nothing else is",
        problems,
    ));
    out
}
