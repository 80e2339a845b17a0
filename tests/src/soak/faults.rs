//! Injects the scheduled faults, one at a time, and heals what a fault left dead (a service
//! that exited because it lost its database is restarted, as a supervisor would).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_kafka::headers::{HeaderMap, to_kafka_headers};
use saga_testkit::TestStack;
use tokio_util::sync::CancellationToken;

use super::netns::Network;
use super::plan::{Fault, PlannedFault, STANDBY_SUFFIX, service_by_name, service_name, step_of};
use super::proxy::Proxy;
use super::report::FaultRecord;
use super::{Endpoints, STANDBY_ENV};
use crate::process::ChildService;
use crate::{Service, Suite};

pub(crate) struct FaultCtx<'a> {
    pub suite: &'a mut Suite,
    pub stack: &'a TestStack,
    pub proxies: &'a HashMap<Service, Proxy>,
    /// The participants' network namespaces, when `cut-broker` is among the faults.
    pub net: Option<&'a Network>,
    pub broker_port: u16,
    pub endpoints: &'a Endpoints,
    /// The standby instances (no consumers), by service.
    pub standbys: &'a mut HashMap<Service, ChildService>,
    pub seed: u64,
    /// Keys of the poison records injected so far.
    pub poison_keys: Vec<String>,
}

/// Runs the schedule: each fault at its planned time (later when the one before took
/// longer); cycles after the first only while the load runs.
pub(crate) async fn run(
    ctx: &mut FaultCtx<'_>,
    schedule: &[PlannedFault],
    start: Instant,
    load_done: &CancellationToken,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    for planned in schedule {
        if planned.cycle > 0 && load_done.is_cancelled() {
            break;
        }
        let due = start + Duration::from_millis(planned.at_ms);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            () = load_done.cancelled() => {
                if planned.cycle > 0 {
                    break;
                }
            }
        }
        let started_ms = start.elapsed().as_millis() as u64;
        let wall = chrono::Utc::now();
        tracing::info!(fault = %planned.fault.describe(), "fault");
        let mut detail = inject(ctx, &planned.fault).await;
        let healed = heal(ctx).await;
        if !healed.is_empty() {
            detail.push_str(&format!("; {healed}"));
        }
        records.push(FaultRecord {
            kind: planned.fault.kind().name(),
            target: planned.fault.target(),
            description: planned.fault.describe(),
            planned_at_ms: planned.at_ms,
            started_at_ms: started_ms,
            ended_at_ms: start.elapsed().as_millis() as u64,
            started_at: wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            during_load: !load_done.is_cancelled(),
            detail,
        });
    }
    records
}

async fn inject(ctx: &mut FaultCtx<'_>, fault: &Fault) -> String {
    match fault {
        Fault::KillService { service, down_ms } if service.ends_with(STANDBY_SUFFIX) => {
            let name = service.trim_end_matches(STANDBY_SUFFIX);
            let service = service_by_name(name).expect("a known service");
            let Some(mut standby) = ctx.standbys.remove(&service) else {
                return format!("{name} runs no standby");
            };
            standby.kill().await;
            tokio::time::sleep(Duration::from_millis(*down_ms)).await;
            let restarting = Instant::now();
            let standby = ChildService::spawn_with(ctx.suite, service, &STANDBY_ENV).await;
            ctx.endpoints.set_standby(service, standby.url.clone());
            ctx.standbys.insert(service, standby);
            format!(
                "healthy {:.1} s after the restart",
                restarting.elapsed().as_secs_f64()
            )
        }
        Fault::KillService { service, down_ms } => {
            let service = service_by_name(service).expect("a known service");
            ctx.suite.kill(service).await;
            tokio::time::sleep(Duration::from_millis(*down_ms)).await;
            let restarting = Instant::now();
            ctx.suite.restart(service).await;
            ctx.endpoints.refresh(ctx.suite);
            format!(
                "healthy {:.1} s after the restart",
                restarting.elapsed().as_secs_f64()
            )
        }
        Fault::KillBroker { down_ms } => {
            let stack = ctx.stack.private().expect("checked at start").stack();
            let Ok(Some(pid)) = stack.pid("broker") else {
                return "the broker was not running".into();
            };
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = saga_testkit::wait_until(Duration::from_secs(10), || async {
                !saga_stack::is_alive(pid)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(*down_ms)).await;
            let restarting = Instant::now();
            match stack.up_component("broker").await {
                Ok(_) => format!(
                    "pid {pid} killed; broker healthy {:.1} s after the restart",
                    restarting.elapsed().as_secs_f64()
                ),
                Err(e) => format!("pid {pid} killed; RESTART FAILED: {e}"),
            }
        }
        Fault::RestartPostgres { down_ms } => {
            let stack = ctx.stack.private().expect("checked at start").stack();
            let stopping = Instant::now();
            let stopped = stack.stop_component("postgres").await;
            let stop_secs = stopping.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_millis(*down_ms)).await;
            let restarting = Instant::now();
            let mut detail = match (stopped, stack.up_component("postgres").await) {
                (Ok(_), Ok(_)) => format!(
                    "stopped in {stop_secs:.1} s; accepting connections {:.1} s after the start",
                    restarting.elapsed().as_secs_f64()
                ),
                (Err(e), _) => format!("STOP FAILED: {e}"),
                (_, Err(e)) => format!("START FAILED: {e}"),
            };
            // The schema registry keeps its data in PostgreSQL too; restart it if it gave up.
            if let Ok(saga_stack::UpOutcome::RestartedAfterStalePid { .. }) =
                stack.up_component("schema-registry").await
            {
                detail.push_str("; schema registry exited and was restarted");
            }
            detail
        }
        Fault::CutNetwork { service, cut_ms } => {
            let proxy = &ctx.proxies[&service_by_name(service).expect("a known service")];
            let refused = proxy.refused();
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(*cut_ms)).await;
            proxy.restore();
            format!(
                "{} connection attempts refused while cut",
                proxy.refused() - refused
            )
        }
        Fault::CutBroker { service, cut_ms } => {
            let service = service_by_name(service).expect("a known service");
            let Some(net) = ctx.net else {
                return "no network namespaces: not cut".into();
            };
            if let Err(e) = net.cut(service, ctx.broker_port) {
                return format!("CUT FAILED: {e}");
            }
            tokio::time::sleep(Duration::from_millis(*cut_ms)).await;
            match net.restore(service) {
                Ok(d) => format!(
                    "{} packets dropped to the broker, {} from it",
                    d.to_broker, d.from_broker
                ),
                Err(e) => format!("RESTORE FAILED: {e}"),
            }
        }
        Fault::Stall { service, stall_ms } => {
            let service = service_by_name(service).expect("a known service");
            stall(ctx, service, *stall_ms).await
        }
        Fault::Duplicates { window_ms } => match duplicate(ctx.suite, *window_ms).await {
            Ok(n) => format!("{n} records republished"),
            Err(e) => format!("republishing failed: {e}"),
        },
        Fault::Poison { topic, count } => {
            let mut sent = 0;
            let mut errors = Vec::new();
            for _ in 0..*count {
                let key = format!("poison-{}-{}", ctx.seed, ctx.poison_keys.len());
                match poison(ctx.suite, topic, &key).await {
                    Ok(()) => {
                        ctx.poison_keys.push(key);
                        sent += 1;
                    }
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                format!("{sent} records with keys poison-{}-*", ctx.seed)
            } else {
                format!("{sent} sent; failed: {}", errors.join("; "))
            }
        }
    }
}

/// SIGSTOP every process of `service` (a participant), SIGCONT after `stall_ms`: longer than
/// the step deadline, so the sagas waiting on it time out and are undone while it is paused;
/// what it does once resumed (the actions it was asked for, its replies) comes after the
/// undo and must change nothing. Says how many sagas timed out at its step meanwhile.
async fn stall(ctx: &mut FaultCtx<'_>, service: Service, stall_ms: u64) -> String {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let step = step_of(service).unwrap_or("?");
    let pids = ctx.suite.pids(service);
    if pids.is_empty() {
        return format!("{} was not running", service_name(service));
    }
    let since = chrono::Utc::now();
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGSTOP);
    }
    tokio::time::sleep(Duration::from_millis(stall_ms)).await;
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
    }
    let timed_out: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM saga_transitions WHERE outcome = 'timed_out' AND at >= $1
         AND detail LIKE '%' || $2 || '%'",
    )
    .bind(since)
    .bind(step)
    .fetch_one(ctx.suite.pool(Service::Orchestrator))
    .await;
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    match timed_out {
        Ok(n) => format!(
            "pid {} stopped for {stall_ms} ms; {n} sagas timed out at {step} meanwhile",
            pids.join(", ")
        ),
        Err(e) => format!(
            "pid {} stopped for {stall_ms} ms; timed-out sagas not counted: {e}",
            pids.join(", ")
        ),
    }
}

/// Restarts every service process that exited on its own (and every standby); says which.
async fn heal(ctx: &mut FaultCtx<'_>) -> String {
    let mut healed = Vec::new();
    let exited: Vec<Service> = ctx
        .standbys
        .iter_mut()
        .filter_map(|(service, standby)| standby.has_exited().then_some(*service))
        .collect();
    for service in exited {
        let standby = ChildService::spawn_with(ctx.suite, service, &STANDBY_ENV).await;
        ctx.endpoints.set_standby(service, standby.url.clone());
        ctx.standbys.insert(service, standby);
        healed.push(format!(
            "{}-standby exited and was restarted",
            service_name(service)
        ));
    }
    for service in Service::ALL {
        let exited = ctx.suite.reap_exited(service);
        if !ctx.suite.is_running(service) {
            ctx.suite.restart(service).await;
            if exited > 0 {
                healed.push(format!(
                    "{} exited and was restarted",
                    service_name(service)
                ));
            }
        }
    }
    ctx.endpoints.refresh(ctx.suite);
    healed.join(", ")
}

#[derive(sqlx::FromRow)]
struct Row {
    topic: String,
    message_key: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<HeaderMap>,
}

/// Every outbox row of every service delivered in the last `window_ms`, published again
/// byte for byte (same message id): each consumer must see it as the duplicate it is.
async fn duplicate(suite: &Suite, window_ms: u64) -> Result<usize, String> {
    let producer: FutureProducer = suite.kafka.producer().map_err(|e| e.to_string())?;
    let mut n = 0;
    for service in Service::ALL {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT topic, message_key, payload, headers FROM outbox
             WHERE delivered_at > now() - make_interval(secs => $1) ORDER BY id",
        )
        .bind(window_ms as f64 / 1000.0)
        .fetch_all(suite.pool(service))
        .await
        .map_err(|e| format!("{}: {e}", service_name(service)))?;
        for row in rows {
            let topic = format!("{}{}", suite.prefix, row.topic);
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&row.message_key)
                        .payload(&row.payload)
                        .headers(to_kafka_headers(&row.headers)),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e.to_string())?;
            n += 1;
        }
    }
    Ok(n)
}

/// A record no consumer can decode (not the Confluent wire format).
async fn poison(suite: &Suite, topic: &str, key: &str) -> Result<(), String> {
    let producer: FutureProducer = suite.kafka.producer().map_err(|e| e.to_string())?;
    let wire = suite.kafka.topic(topic);
    producer
        .send(
            FutureRecord::to(&wire)
                .key(key)
                .payload(b"chaos soak: this is not an Avro message".as_slice()),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| format!("{wire}: {e}"))
}
