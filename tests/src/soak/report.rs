//! The soak's report: JSON for machines, Markdown for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::check::{self, Books, Drain, outcome};
use super::load::PlacedOrder;
use super::plan::PlannedFault;
use super::{SoakConfig, plan};
use crate::{Service, Suite};

/// One invariant: PASS when nothing broke it.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub what: &'static str,
    pub pass: bool,
    pub violations: usize,
    /// The first violations.
    pub examples: Vec<String>,
}

impl Invariant {
    pub fn new(name: &'static str, what: &'static str, problems: Vec<String>) -> Invariant {
        Invariant {
            name,
            what,
            pass: problems.is_empty(),
            violations: problems.len(),
            examples: problems.into_iter().take(10).collect(),
        }
    }
}

/// A fault as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: &'static str,
    /// The service (or `<service>-standby`) it hit, if it hit one.
    pub target: Option<&'static str>,
    pub description: String,
    /// Offsets from the start of the load.
    pub planned_at_ms: u64,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub started_at: String,
    /// Whether orders were still being placed when it started.
    pub during_load: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

fn percentiles(mut v: Vec<u64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Some(Percentiles {
        count: v.len(),
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Sagas that ended while a fault was in progress, per second of faults.
    pub during_faults_per_s: f64,
    pub fault_secs: f64,
    /// Sagas that ended during the load with no fault in progress, per second of that time.
    pub without_faults_per_s: f64,
    pub quiet_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineStep {
    /// From the order being placed.
    pub at_ms: i64,
    pub transition: String,
    pub caused_by: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlowSaga {
    pub order_id: String,
    pub path: &'static str,
    pub outcome: &'static str,
    pub latency_ms: u64,
    /// Faults that were in progress while the saga ran.
    pub overlapping_faults: Vec<String>,
    pub timeline: Vec<TimelineStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub passed: bool,
    pub seed: u64,
    pub orders: usize,
    pub rate_per_s: f64,
    pub faults_selected: Vec<&'static str>,
    pub fault_gap_s: (f64, f64),
    pub fetch_wait_max_ms: u32,
    pub double_refund_switch: bool,
    pub started_at: String,
    pub load_secs: f64,
    pub accepted: usize,
    /// Client POSTs beyond the first, summed (retries while the order service was down).
    pub client_retries: u64,
    pub drain: Drain,
    /// Outcome -> orders.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Meant path -> outcome -> orders.
    pub by_path: BTreeMap<&'static str, BTreeMap<&'static str, usize>>,
    pub faults: Vec<FaultRecord>,
    pub faults_planned: usize,
    pub throughput: Throughput,
    /// From the order being placed to its saga ending.
    pub latency: Option<Percentiles>,
    pub latency_by_outcome: BTreeMap<&'static str, Percentiles>,
    pub incidents: Vec<String>,
    /// The orchestrator's deadline of each undoable step in this run.
    pub step_deadline_ms: u64,
    /// Services that ran a standby instance (no consumers) next to the main one.
    pub standbys: Vec<&'static str>,
    /// Timed-out sagas by step and by the fault that explains them (`unexplained` when
    /// none does: `every_order_took_its_path` then fails).
    pub timed_out: BTreeMap<String, BTreeMap<String, usize>>,
    pub slowest: Vec<SlowSaga>,
    pub invariants: Vec<Invariant>,
    /// How the run was set up beyond its options, and faults it had to skip (e.g. cut-broker
    /// where network namespaces are unavailable).
    pub notes: Vec<String>,
}

pub(crate) struct Inputs<'a> {
    pub cfg: &'a SoakConfig,
    pub start_wall: DateTime<Utc>,
    pub load_secs: f64,
    pub placed: &'a [PlacedOrder],
    pub faults: Vec<FaultRecord>,
    pub schedule: &'a [PlannedFault],
    pub books: &'a Books,
    pub drain: &'a Drain,
    pub invariants: Vec<Invariant>,
    pub suite: &'a Suite,
}

fn ms_since(start: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (t - start).num_milliseconds()
}

pub(crate) async fn build(inputs: Inputs<'_>) -> Report {
    let Inputs {
        cfg,
        start_wall,
        load_secs,
        placed,
        faults,
        schedule,
        books,
        drain,
        invariants,
        suite,
    } = inputs;
    let mut outcomes = BTreeMap::new();
    let mut by_path: BTreeMap<&'static str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    let mut latencies: Vec<(u64, &PlacedOrder, &'static str, i64, i64)> = Vec::new();
    let mut incidents = Vec::new();
    for o in placed {
        let Some(id) = o.order_id else {
            *outcomes.entry("not_accepted").or_default() += 1;
            continue;
        };
        let view = books.orders.get(&id).and_then(Option::as_ref);
        let saga = books.sagas.get(id.as_uuid());
        let got = outcome(view, saga);
        *outcomes.entry(got).or_default() += 1;
        *by_path
            .entry(o.planned.path.name())
            .or_default()
            .entry(got)
            .or_default() += 1;
        if got == "incident" {
            incidents.push(format!(
                "{id}: {}",
                saga.and_then(|s| s.failure_reason.as_deref()).unwrap_or("")
            ));
        }
        if let (Some(view), Some(finished)) = (view, saga.and_then(|s| s.finished_at)) {
            let placed_ms = ms_since(start_wall, view.placed_at);
            let finished_ms = ms_since(start_wall, finished);
            latencies.push((
                (finished_ms - placed_ms).max(0) as u64,
                o,
                got,
                placed_ms,
                finished_ms,
            ));
        }
    }

    // Throughput: sagas ending inside a fault's [start, end] versus during the rest of the
    // load.
    let windows: Vec<(i64, i64)> = faults
        .iter()
        .map(|f| (f.started_at_ms as i64, f.ended_at_ms as i64))
        .collect();
    let load_ms = (load_secs * 1000.0) as i64;
    let in_fault = |t: i64| windows.iter().any(|(a, b)| t >= *a && t <= *b);
    let fault_ms: i64 = windows
        .iter()
        .map(|(a, b)| (b.min(&load_ms) - a).max(0))
        .sum();
    let (mut during, mut quiet) = (0usize, 0usize);
    for (_, _, _, _, finished) in &latencies {
        if *finished > load_ms {
            continue;
        }
        if in_fault(*finished) {
            during += 1;
        } else {
            quiet += 1;
        }
    }
    let fault_secs = fault_ms as f64 / 1000.0;
    let quiet_secs = ((load_ms - fault_ms) as f64 / 1000.0).max(0.0);
    let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let throughput = Throughput {
        during_faults_per_s: per_s(during, fault_secs),
        fault_secs,
        without_faults_per_s: per_s(quiet, quiet_secs),
        quiet_secs,
    };

    let latency = percentiles(latencies.iter().map(|l| l.0).collect());
    let mut latency_by_outcome = BTreeMap::new();
    for name in [
        "approved",
        "out_of_stock",
        "declined",
        "shipping_refused",
        "timed_out",
    ] {
        if let Some(p) = percentiles(
            latencies
                .iter()
                .filter(|l| l.2 == name)
                .map(|l| l.0)
                .collect(),
        ) {
            latency_by_outcome.insert(name, p);
        }
    }

    latencies.sort_by_key(|l| std::cmp::Reverse(l.0));
    let mut slowest = Vec::new();
    for (latency_ms, o, got, placed_ms, finished_ms) in latencies.iter().take(cfg.slowest) {
        let id = o.order_id.expect("accepted");
        let overlapping_faults = faults
            .iter()
            .filter(|f| {
                (f.started_at_ms as i64) <= *finished_ms && (f.ended_at_ms as i64) >= *placed_ms
            })
            .map(|f| {
                format!(
                    "{} (at {:.1} s)",
                    f.description,
                    f.started_at_ms as f64 / 1000.0
                )
            })
            .collect();
        let saga = suite_saga(suite, id).await;
        let placed_at = books
            .orders
            .get(&id)
            .and_then(Option::as_ref)
            .map(|v| v.placed_at)
            .unwrap_or(start_wall);
        let timeline = saga
            .as_ref()
            .and_then(|s| s["timeline"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let at = t["at"]
                    .as_str()
                    .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                    .map_or(0, |at| ms_since(placed_at, at));
                TimelineStep {
                    at_ms: at,
                    transition: format!(
                        "{}/{} -> {}/{} ({})",
                        t["from_state"].as_str().unwrap_or("-"),
                        t["from_step"].as_str().unwrap_or("-"),
                        t["to_state"].as_str().unwrap_or("-"),
                        t["to_step"].as_str().unwrap_or("-"),
                        t["outcome"].as_str().unwrap_or("")
                    ),
                    caused_by: t["caused_by_type"].as_str().unwrap_or("").to_owned(),
                    detail: t["detail"].as_str().map(str::to_owned),
                }
            })
            .collect();
        slowest.push(SlowSaga {
            order_id: id.to_string(),
            path: o.planned.path.name(),
            outcome: got,
            latency_ms: *latency_ms,
            overlapping_faults,
            timeline,
        });
    }

    let mut timed_out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for t in check::timed_out(
        books,
        &check::Timeouts {
            faults: &faults,
            start_wall,
            step_deadline: cfg.step_deadline,
        },
    ) {
        *timed_out
            .entry(t.step.unwrap_or("(no step named)").to_owned())
            .or_default()
            .entry(t.explained_by.unwrap_or_else(|| "unexplained".to_owned()))
            .or_default() += 1;
    }

    Report {
        passed: invariants.iter().all(|i| i.pass),
        seed: cfg.seed,
        orders: cfg.orders,
        rate_per_s: cfg.rate,
        faults_selected: cfg.faults.iter().map(|k| k.name()).collect(),
        fault_gap_s: (cfg.gap.0.as_secs_f64(), cfg.gap.1.as_secs_f64()),
        fetch_wait_max_ms: cfg.fetch_wait_max_ms,
        double_refund_switch: cfg.double_refund,
        started_at: start_wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        load_secs,
        accepted: placed.iter().filter(|o| o.order_id.is_some()).count(),
        client_retries: placed
            .iter()
            .map(|o| u64::from(o.attempts.saturating_sub(1)))
            .sum(),
        drain: drain.clone(),
        outcomes,
        by_path,
        faults,
        faults_planned: schedule.len(),
        throughput,
        latency,
        latency_by_outcome,
        incidents,
        step_deadline_ms: cfg.step_deadline.as_millis() as u64,
        standbys: cfg
            .standbys
            .iter()
            .map(|s| plan::service_name(*s))
            .collect(),
        timed_out,
        slowest,
        invariants,
        notes: Vec::new(),
    }
}

async fn suite_saga(suite: &Suite, id: saga_contracts::OrderId) -> Option<serde_json::Value> {
    let url = format!("{}/sagas/{id}", suite.url(Service::Orchestrator));
    suite.http().get(&url).send().await.ok()?.json().await.ok()
}

impl Report {
    /// The violated invariants' names.
    pub fn failed(&self) -> Vec<&'static str> {
        self.invariants
            .iter()
            .filter(|i| !i.pass)
            .map(|i| i.name)
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Chaos soak: {}\n",
            if self.passed { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(
            md,
            "Seed {} · {} orders at {}/s (load {:.0} s) · faults: {} (one every {:.0}-{:.0} s) · standby instances: {} · fetch wait {} ms · started {}{}\n",
            self.seed,
            self.orders,
            self.rate_per_s,
            self.load_secs,
            self.faults_selected.join(", "),
            self.fault_gap_s.0,
            self.fault_gap_s.1,
            if self.standbys.is_empty() {
                "none".to_owned()
            } else {
                self.standbys.join(", ")
            },
            self.fetch_wait_max_ms,
            self.started_at,
            if self.double_refund_switch {
                " · **test-only double-refund switch ON**"
            } else {
                ""
            }
        );
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() {
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "## Invariants\n\n| invariant | result | what it checks |\n|---|---|---|"
        );
        for i in &self.invariants {
            let result = if i.pass {
                "PASS".to_owned()
            } else {
                format!("**FAIL** ({} violations)", i.violations)
            };
            let _ = writeln!(md, "| `{}` | {result} | {} |", i.name, i.what);
        }
        for i in self.invariants.iter().filter(|i| !i.pass) {
            let _ = writeln!(
                md,
                "\n`{}` violations (first {}):\n",
                i.name,
                i.examples.len()
            );
            for e in &i.examples {
                let _ = writeln!(md, "- {e}");
            }
        }
        let _ = writeln!(
            md,
            "\n## Orders\n\n{} placed, {} accepted ({} client retries while the order service was down). Drained in {:.1} s after the load (lag {}, undelivered outbox rows {}, sagas in flight {}).\n",
            self.orders,
            self.accepted,
            self.client_retries,
            self.drain.secs,
            self.drain.lag,
            self.drain.outbox_pending,
            self.drain.sagas_in_flight
        );
        let outcome_names: Vec<&str> = self.outcomes.keys().copied().collect();
        let _ = writeln!(md, "| meant path | {} |", outcome_names.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(outcome_names.len()));
        for path in plan::Path::ALL {
            let row = self.by_path.get(path.name());
            let cells: Vec<String> = outcome_names
                .iter()
                .map(|o| row.and_then(|r| r.get(o)).copied().unwrap_or(0).to_string())
                .collect();
            let _ = writeln!(md, "| {} | {} |", path.name(), cells.join(" | "));
        }
        let cells: Vec<String> = outcome_names
            .iter()
            .map(|o| self.outcomes[o].to_string())
            .collect();
        let _ = writeln!(md, "| **all** | {} |", cells.join(" | "));
        let _ = writeln!(
            md,
            "\nStep deadline {:.0} s (reserve_stock, charge_payment, schedule_shipment). Timed-out sagas by step and by the fault that kept the step's participant from answering:\n",
            self.step_deadline_ms as f64 / 1000.0
        );
        if self.timed_out.is_empty() {
            let _ = writeln!(md, "None.");
        } else {
            let _ = writeln!(md, "| step | explained by | sagas |\n|---|---|---|");
            for (step, by) in &self.timed_out {
                for (fault, n) in by {
                    let _ = writeln!(md, "| {step} | {fault} | {n} |");
                }
            }
        }
        if !self.incidents.is_empty() {
            let _ = writeln!(md, "\nIncidents (open, for an operator):\n");
            for i in &self.incidents {
                let _ = writeln!(md, "- {i}");
            }
        }

        let _ = writeln!(
            md,
            "\n## Throughput and latency\n\n| | sagas/s | over |\n|---|---|---|\n| during faults | {:.1} | {:.0} s |\n| without faults | {:.1} | {:.0} s |\n",
            self.throughput.during_faults_per_s,
            self.throughput.fault_secs,
            self.throughput.without_faults_per_s,
            self.throughput.quiet_secs
        );
        let _ = writeln!(
            md,
            "Order placed to saga ended, ms:\n\n| outcome | sagas | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|"
        );
        let row = |md: &mut String, name: &str, p: &Percentiles| {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        };
        for (name, p) in &self.latency_by_outcome {
            row(&mut md, name, p);
        }
        if let Some(p) = &self.latency {
            row(&mut md, "**all**", p);
        }

        let _ = writeln!(
            md,
            "\n## Faults ({} run of {} planned)\n\n| # | at (s) | took (s) | fault | during load | what happened |\n|---|---|---|---|---|---|",
            self.faults.len(),
            self.faults_planned
        );
        for (n, f) in self.faults.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} | {} | {} | {} |",
                n + 1,
                f.started_at_ms as f64 / 1000.0,
                (f.ended_at_ms.saturating_sub(f.started_at_ms)) as f64 / 1000.0,
                f.description,
                if f.during_load { "yes" } else { "no" },
                f.detail
            );
        }

        let _ = writeln!(md, "\n## Slowest sagas\n");
        for s in &self.slowest {
            let _ = writeln!(
                md,
                "### {} ({}, meant {}): {} ms\n",
                s.order_id, s.outcome, s.path, s.latency_ms
            );
            if !s.overlapping_faults.is_empty() {
                let _ = writeln!(md, "While: {}\n", s.overlapping_faults.join("; "));
            }
            let _ = writeln!(
                md,
                "| +ms | transition | caused by | detail |\n|---|---|---|---|"
            );
            for t in &s.timeline {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    t.at_ms,
                    t.transition,
                    t.caused_by,
                    t.detail.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(md);
        }
        md
    }
}
