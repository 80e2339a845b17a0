//! `bench-saga`: orders placed concurrently over HTTP through the whole suite
//! ([`saga_e2e::Suite`]: the five services in this process, fresh databases, prefixed topics
//! on the stack's broker and Postgres).
//!
//! Figures: completed sagas/s, saga latency (order placed -> order APPROVED, both read from
//! the order service's event store, so one clock and no polling error), the broker's own hop
//! latency (idle, and under the saga's load) times the saga's hops, CPU per process, and the
//! commits each service's database made per saga with the batch sizes its relay and
//! consumers achieved: where the time goes.
//!
//! And the ceilings, measured in the same run on the same stack, so a saga rate reads as a
//! fraction of what the parts allow: the broker alone (messages/s through the probe
//! topic at full speed, divided by the messages a saga sends) and PostgreSQL alone
//! (pgbench single-row commits/s, divided by the commits a saga makes); plus the time
//! transactions spent waiting on each other's row locks (`pg_stat_activity` sampled).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use saga_bench::cpu::Watch;
use saga_bench::hop::HopProbe;
use saga_bench::pg::{LockSampler, LockWaits, StatementCost, Statements};
use saga_bench::stats::{Samples, ms};
use saga_contracts::OrderId;
use saga_e2e::{Service, Suite, SuiteOptions, eur, order_body};
use saga_testkit::TestStack;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Messages on the way from POST /orders to the order's APPROVED state: OrderPlaced,
/// ReserveStock, StockReserved, ChargePayment, PaymentCharged, ScheduleShipment,
/// ShipmentScheduled, ApproveOrder (OrderApproved, the 9th, only closes the saga).
const HOPS_TO_APPROVED: u32 = 8;

#[derive(Parser, Debug)]
#[command(name = "bench-saga", about)]
struct Args {
    /// Orders of the `max` phase; a rate phase places `rate x --phase-secs` orders.
    #[arg(long, default_value_t = 2000)]
    orders: usize,
    /// Phases: offered order rates per second (open loop), or `max` (all orders at once,
    /// `--concurrency` POSTs in flight). A low rate shows the latency floor, `max` the
    /// throughput.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,max")]
    phases: Vec<String>,
    #[arg(long, default_value_t = 10)]
    phase_secs: u64,
    /// POSTs in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Consumer `fetch.wait.max.ms` of every service (the suite's default: on the patched
    /// broker a fetch returns when data arrives, so this only paces idle consumers).
    #[arg(long, default_value_t = SuiteOptions::default().fetch_wait_max_ms)]
    fetch_wait_ms: u32,
    /// Connection pool size of each service.
    #[arg(long, default_value_t = 10)]
    db_max_connections: u32,
    /// Distinct SKUs (one per order, round robin): fewer means hotter stock rows.
    #[arg(long, default_value_t = 50)]
    skus: usize,
    /// Distinct customers (round robin): fewer means hotter account rows.
    #[arg(long, default_value_t = 100)]
    customers: usize,
    #[arg(long, default_value_t = 40)]
    warmup: usize,
    /// Broker hop probes per second sent while the sagas run.
    #[arg(long, default_value_t = 50)]
    hop_rate: u32,
    /// Messages of the broker-alone throughput run (probe topic, all sent at once).
    #[arg(long, default_value_t = 5000)]
    broker_messages: u64,
    /// pgbench clients and seconds for PostgreSQL's single-row commit ceiling (0 s: skip).
    #[arg(long, default_value_t = 8)]
    pgbench_clients: u32,
    #[arg(long, default_value_t = 5)]
    pgbench_secs: u32,
    /// How often `pg_stat_activity` is sampled for backends waiting on a lock.
    #[arg(long, default_value_t = 10)]
    lock_sample_ms: u64,
}

fn main() -> anyhow::Result<()> {
    // Services, HTTP and the load generator share this runtime: as in a process per
    // service, every core is available to the work.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Before the suite installs its own (which writes to stdout): logs on stderr, and
    // sqlx's slow-statement warnings (lock waits show as slow statements) are counted in
    // the lock-wait figures rather than printed between the tables.
    saga_bench::init_tracing_with_spans();
    let stack = TestStack::get().await;
    let admin = PgPool::connect(stack.pg_admin_url()).await?;
    let suite = Suite::start_with(SuiteOptions {
        fetch_wait_max_ms: args.fetch_wait_ms,
        db_max_connections: args.db_max_connections,
        // The services' own defaults, not the tests' quick ones: a re-sent command is
        // extra load that a real deployment would not add at these latencies.
        relay_poll_ms: 500,
        retry_timeout_ms: 30_000,
        retry_interval_ms: 1_000,
        ..SuiteOptions::default()
    })
    .await;
    let databases: Vec<(Service, String)> = Service::ALL
        .iter()
        .map(|s| {
            let url = suite.database_url(*s);
            let name = url.rsplit('/').next().unwrap_or(url).to_owned();
            (*s, name)
        })
        .collect();

    let skus: Vec<String> = (0..args.skus).map(|i| format!("BENCH-{i}")).collect();
    let customers: Vec<String> = (0..args.customers).map(|i| format!("bench-{i}")).collect();
    for sku in &skus {
        suite.set_price(sku, eur(100)).await;
        suite.seed_stock(sku, 1_000_000_000).await;
    }
    for customer in &customers {
        suite.set_credit(customer, eur(100_000_000_000)).await;
    }

    let token = CancellationToken::new();
    let probe = Arc::new(HopProbe::start(&suite.kafka, "bench.hop", token.clone()).await?);
    let idle_watch = Watch::stack(&[]);
    let idle_from = idle_watch.read();
    let hop_idle = probe.measure(200, 100).await?;
    let idle_cpu = idle_watch.usage(&idle_from, &idle_watch.read());
    let broker_rate = match probe.throughput(args.broker_messages).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("broker alone: {e:#}");
            f64::NAN
        }
    };
    let pg_ceiling = if args.pgbench_secs > 0 {
        match saga_bench::pg::pgbench(stack, args.pgbench_clients, args.pgbench_secs).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("pgbench: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let db_names: Vec<String> = databases.iter().map(|(_, d)| d.clone()).collect();
    let locks = LockSampler::start(
        admin.clone(),
        db_names.clone(),
        Duration::from_millis(args.lock_sample_ms.max(1)),
    );

    let statements = Statements::open(&admin).await;

    let order_pool = suite.pool(Service::Order).clone();
    let mut placer = Placer {
        suite: &suite,
        skus: &skus,
        customers: &customers,
        concurrency: args.concurrency,
        next: 0,
    };
    let warm = placer.place(args.warmup, None).await?.0;
    wait_final(&order_pool, &warm).await?;

    let watch = Watch::stack(&[]).postgres_databases(
        &databases
            .iter()
            .map(|(s, db)| (format!("pg:{}", short(*s)), db.clone()))
            .collect::<Vec<_>>(),
    );

    println!("# saga benchmark");
    println!(
        "fetch.wait.max.ms {}, pool {} per service, {} SKUs, {} customers, one item per order; services in-process ({}); CPU from {}",
        args.fetch_wait_ms,
        args.db_max_connections,
        args.skus,
        args.customers,
        if cfg!(debug_assertions) {
            "DEBUG build"
        } else {
            "release build"
        },
        watch.source
    );
    if let Some(h) = hop_idle.summary() {
        println!(
            "broker hop, idle broker: p50 {} ms, p99 {} ms; x {HOPS_TO_APPROVED} hops = {} / {} ms",
            ms(h.p50),
            ms(h.p99),
            ms(h.p50 * HOPS_TO_APPROVED),
            ms(h.p99 * HOPS_TO_APPROVED)
        );
    }
    println!(
        "CPU of the idle suite meanwhile (only the 200 probes in 2 s; consumers polling): {}, machine busy {:.0}%",
        idle_cpu.compact(),
        idle_cpu.machine_busy_pct
    );
    println!(
        "broker alone (probe topic, {} messages sent at once, produce -> consume): {broker_rate:.0} messages/s",
        args.broker_messages
    );
    match pg_ceiling {
        Some(c) => println!(
            "PostgreSQL alone (pgbench, {} clients, single-row INSERT per transaction, same cluster): {:.0} commits/s",
            c.clients, c.commits_per_sec
        ),
        None => println!("PostgreSQL alone: not measured"),
    }
    println!();
    println!(
        "| orders/s offered | orders | sagas/s | placed -> APPROVED p50 / p95 / p99 ms | broker hop under load p50 / p99 ms (x {HOPS_TO_APPROVED}: p50) | POST p50 ms | approved / rejected | CPU % of a core | machine busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut per_service = Vec::new();
    let mut ratios = Vec::new();
    let mut profiles = Vec::new();
    for phase in &args.phases {
        let rate: Option<u32> = match phase.as_str() {
            "max" => None,
            r => Some(
                r.parse()
                    .with_context(|| format!("phase {r}: a rate or `max`"))?,
            ),
        };
        let n = rate.map_or(args.orders, |r| (u64::from(r) * args.phase_secs) as usize);
        let commits_before = commits(&admin, &databases).await?;
        let wal_before = wal(&admin).await?;
        let messages_before = messages(&suite).await?;
        let deadlocks_before = saga_bench::pg::deadlocks(&admin, &db_names).await?;
        let locks_from = locks.read();
        if let Some(s) = &statements {
            s.reset().await?;
        }
        let phase_started = Instant::now();
        let cpu_from = watch.read();

        // Probes under load, at a steady rate while the sagas run.
        probe.take();
        let loading = Arc::new(AtomicBool::new(true));
        let prober = {
            let (probe, loading) = (probe.clone(), loading.clone());
            let every = Duration::from_secs_f64(1.0 / f64::from(args.hop_rate.max(1)));
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(every);
                while loading.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    probe.send();
                }
            })
        };
        let (orders, post) = placer.place(n, rate).await?;
        wait_final(&order_pool, &orders).await?;
        let cpu = watch.usage(&cpu_from, &watch.read());
        let lock_waits = LockSampler::between(locks_from, locks.read(), phase_started.elapsed());
        loading.store(false, Ordering::Relaxed);
        prober.await?;
        let hop = probe.take();
        let hop_summary = hop.summary();
        let outcome = outcomes(&order_pool, &orders).await?;
        let commits_after = settled_commits(&admin, &databases, &commits_before).await?;
        let wal_after = wal(&admin).await?;
        let messages_after = messages(&suite).await?;
        let deadlocks_after = saga_bench::pg::deadlocks(&admin, &db_names).await?;
        if let Some(s) = &statements {
            profiles.push((phase.clone(), n, s.read(&db_names).await?));
        }

        let latency = outcome.latency.summary().map_or("-".to_owned(), |s| {
            format!("{} / {} / {}", ms(s.p50), ms(s.p95), ms(s.p99))
        });
        let latency_summary = outcome.latency.summary();
        let hop = hop_summary.as_ref().map_or("-".to_owned(), |h| {
            format!(
                "{} / {} ({})",
                ms(h.p50),
                ms(h.p99),
                ms(h.p50 * HOPS_TO_APPROVED)
            )
        });
        println!(
            "| {phase} | {n} | {:.0} | {latency} | {hop} | {} | {} / {} | {} | {:.0}% |",
            outcome.throughput,
            post.summary().map_or("-".to_owned(), |s| ms(s.p50)),
            outcome.approved,
            outcome.rejected,
            cpu.compact(),
            cpu.machine_busy_pct
        );
        let txs: Vec<f64> = databases
            .iter()
            .map(|(_, db)| {
                let delta = commits_after.get(db).copied().unwrap_or(0)
                    - commits_before.get(db).copied().unwrap_or(0);
                delta as f64 / n as f64
            })
            .collect();
        let fsyncs = (wal_after.0 - wal_before.0) as f64 / n as f64;
        per_service.push((phase, txs.clone(), fsyncs));
        ratios.push(Ratios {
            phase: phase.clone(),
            sagas_per_sec: outcome.throughput,
            messages_per_saga: (messages_after - messages_before) as f64 / n as f64,
            commits_per_saga: txs.iter().sum(),
            latency: latency_summary.map(|s| (s.p50, s.p99)),
            hop: hop_summary.map(|h| (h.p50, h.p99)),
            lock_waits,
            deadlocks: deadlocks_after - deadlocks_before,
            n,
        });
    }
    drop(locks);

    println!();
    println!(
        "Against the ceilings measured above: the broker's (broker-alone messages/s / messages per saga) and PostgreSQL's (pgbench commits/s / commits per saga); latency against {HOPS_TO_APPROVED} x the broker hop measured under the same load; lock waits from `pg_stat_activity` sampled every {} ms (mean waiting backends x phase time), deadlocks from `pg_stat_database`:",
        args.lock_sample_ms
    );
    println!();
    println!(
        "| orders/s offered | sagas/s | messages/saga | broker ceiling sagas/s (achieved %) | commits/saga | PostgreSQL ceiling sagas/s (achieved %) | p50 / p99 ms vs {HOPS_TO_APPROVED} x hop p50 / p99 ms | lock wait ms/saga (mean waiters) | deadlocks |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &ratios {
        let broker_ceiling = broker_rate / r.messages_per_saga;
        let pg = pg_ceiling.map_or("-".to_owned(), |c| {
            let ceiling = c.commits_per_sec / r.commits_per_saga;
            format!("{ceiling:.0} ({:.0}%)", 100.0 * r.sagas_per_sec / ceiling)
        });
        let latency = match (r.latency, r.hop) {
            (Some((l50, l99)), Some((h50, h99))) => format!(
                "{} / {} vs {} / {}",
                ms(l50),
                ms(l99),
                ms(h50 * HOPS_TO_APPROVED),
                ms(h99 * HOPS_TO_APPROVED)
            ),
            _ => "-".to_owned(),
        };
        println!(
            "| {} | {:.0} | {:.2} | {broker_ceiling:.0} ({:.0}%) | {:.2} | {pg} | {latency} | {:.1} ({:.2}) | {} |",
            r.phase,
            r.sagas_per_sec,
            r.messages_per_saga,
            100.0 * r.sagas_per_sec / broker_ceiling,
            r.commits_per_saga,
            r.lock_waits.wait.as_secs_f64() * 1000.0 / r.n as f64,
            r.lock_waits.mean_waiters,
            r.deadlocks
        );
    }

    println!();
    println!(
        "Transactions per saga by service database (all transactions, read-only ones included: relay polls that found nothing, projector catch-ups), and WAL fsyncs per saga (whole cluster):"
    );
    println!();
    let names: Vec<&str> = databases.iter().map(|(s, _)| short(*s)).collect();
    println!(
        "| orders/s offered | {} | all | WAL fsyncs |",
        names.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(names.len()));
    for (phase, txs, fsyncs) in per_service {
        let cells: Vec<String> = txs.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "| {phase} | {} | {:.2} | {fsyncs:.2} |",
            cells.join(" | "),
            txs.iter().sum::<f64>()
        );
    }
    println!();
    println!(
        "Batch sizes over the whole run (rows per relay transaction / messages per consumer transaction):"
    );
    println!();
    println!("| service | relay rows/tx | consumer msgs/tx |");
    println!("|---|---|---|");
    for (service, _) in &databases {
        let (relay, consumer) = batch_sizes(suite.pool(*service)).await?;
        println!("| {} | {relay:.1} | {consumer:.1} |", short(*service));
    }

    print_statements(&databases, &profiles);

    token.cancel();
    drop(probe);
    suite.stop().await;
    admin.close().await;
    Ok(())
}

/// Statements per saga by service database, and the most frequent statements of each phase
/// (`pg_stat_statements`, BEGIN and COMMIT included): each statement is a round trip, and
/// round trips, not commits, are what a saga costs here.
fn print_statements(
    databases: &[(Service, String)],
    profiles: &[(String, usize, Vec<StatementCost>)],
) {
    if profiles.is_empty() {
        return;
    }
    let name_of = |db: &str| {
        databases
            .iter()
            .find(|(_, d)| d == db)
            .map_or("?", |(s, _)| short(*s))
    };
    println!();
    println!(
        "Statements per saga by service database (`pg_stat_statements`, BEGIN and COMMIT included; the benchmark's own polling of the order database included):"
    );
    println!();
    let names: Vec<&str> = databases.iter().map(|(s, _)| short(*s)).collect();
    println!("| orders/s offered | {} | all |", names.join(" | "));
    println!("|---|{}---|", "---|".repeat(names.len()));
    for (phase, n, costs) in profiles {
        let per_db: Vec<f64> = databases
            .iter()
            .map(|(_, db)| {
                costs
                    .iter()
                    .filter(|c| &c.database == db)
                    .map(|c| c.calls)
                    .sum::<i64>() as f64
                    / *n as f64
            })
            .collect();
        let cells: Vec<String> = per_db.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "| {phase} | {} | {:.1} |",
            cells.join(" | "),
            per_db.iter().sum::<f64>()
        );
    }
    for (phase, n, costs) in profiles {
        println!();
        println!("Most frequent statements, phase {phase}:");
        println!();
        println!("| database | calls/saga | mean ms | statement |");
        println!("|---|---|---|---|");
        for c in costs.iter().take(15) {
            let text: String = c.query.split_whitespace().collect::<Vec<_>>().join(" ");
            let text: String = text.replace('|', "\\|").chars().take(110).collect();
            println!(
                "| {} | {:.2} | {:.3} | `{text}` |",
                name_of(&c.database),
                c.calls as f64 / *n as f64,
                c.total_ms / c.calls.max(1) as f64
            );
        }
    }
}

/// One phase's figures against the ceilings.
struct Ratios {
    phase: String,
    sagas_per_sec: f64,
    messages_per_saga: f64,
    commits_per_saga: f64,
    latency: Option<(Duration, Duration)>,
    hop: Option<(Duration, Duration)>,
    lock_waits: LockWaits,
    deadlocks: i64,
    n: usize,
}

/// Messages the services have sent so far: outbox rows of every service database (each is
/// one record produced to the broker).
async fn messages(suite: &Suite) -> anyhow::Result<i64> {
    let mut total = 0;
    for service in Service::ALL.iter() {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(suite.pool(*service))
            .await?;
        total += n;
    }
    Ok(total)
}

fn short(s: Service) -> &'static str {
    match s {
        Service::Order => "order",
        Service::Inventory => "inventory",
        Service::Payment => "payment",
        Service::Shipping => "shipping",
        Service::Orchestrator => "orchestrator",
    }
}

struct Placer<'a> {
    suite: &'a Suite,
    skus: &'a [String],
    customers: &'a [String],
    concurrency: usize,
    /// Orders placed so far (spreads SKUs and customers round robin across phases).
    next: usize,
}

impl Placer<'_> {
    /// Place `n` orders, at `rate` per second (open loop) or all at once, with at most
    /// `concurrency` POSTs in flight; returns their ids and each POST's latency.
    async fn place(
        &mut self,
        n: usize,
        rate: Option<u32>,
    ) -> anyhow::Result<(Vec<OrderId>, Samples)> {
        let first = self.next;
        self.next += n;
        let this = &*self;
        let start = tokio::time::Instant::now();
        let results: Vec<anyhow::Result<(OrderId, Duration)>> =
            futures::stream::iter(first..first + n)
                .map(|i| async move {
                    if let Some(r) = rate {
                        let due = (i - first) as f64 / f64::from(r.max(1));
                        tokio::time::sleep_until(start + Duration::from_secs_f64(due)).await;
                    }
                    let sku = &this.skus[i % this.skus.len()];
                    let customer = &this.customers[i % this.customers.len()];
                    let body = order_body(customer, &[(sku, 1)], "DE");
                    let sent = Instant::now();
                    let resp = this.suite.post_order(&body, None).await;
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    anyhow::ensure!(status.as_u16() == 202, "POST /orders: {status} {text}");
                    let v: serde_json::Value = serde_json::from_str(&text)?;
                    let id = v["order_id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .with_context(|| format!("no order_id in {text}"))?;
                    Ok((id, sent.elapsed()))
                })
                .buffer_unordered(this.concurrency)
                .collect()
                .await;
        let mut ids = Vec::with_capacity(n);
        let mut post = Samples::new();
        for r in results {
            let (id, took) = r?;
            ids.push(id);
            post.push(took);
        }
        Ok((ids, post))
    }
}

fn uuids(orders: &[OrderId]) -> Vec<Uuid> {
    orders.iter().map(|o| *o.as_uuid()).collect()
}

/// Wait until every order is APPROVED or REJECTED in the event store; fails when none
/// became final for 60 s (a stall), not on a fixed total time. Polls every 250 ms: the
/// figures come from the events' own timestamps, and a tighter poll (2,000 ids each time)
/// would be load on the order database that the benchmark then counts against the saga.
async fn wait_final(pool: &PgPool, orders: &[OrderId]) -> anyhow::Result<()> {
    let ids = uuids(orders);
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM order_events
             WHERE type IN ('OrderApproved', 'OrderRejected') AND order_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
    };
    let mut last = (count().await, Instant::now());
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        let now = last.0;
        if now >= ids.len() as i64 {
            return Ok(());
        }
        ticker.tick().await;
        let now_count = count().await;
        if now_count != now {
            last = (now_count, Instant::now());
        }
        anyhow::ensure!(
            last.1.elapsed() < Duration::from_secs(60),
            "sagas stalled: {now} of {} final for 60 s",
            ids.len()
        );
    }
}

struct Outcome {
    approved: usize,
    rejected: usize,
    latency: Samples,
    throughput: f64,
}

/// Latencies and throughput from the event store's own timestamps.
async fn outcomes(pool: &PgPool, orders: &[OrderId]) -> anyhow::Result<Outcome> {
    let rows: Vec<(Uuid, String, f64)> = sqlx::query_as(
        "SELECT order_id, type, EXTRACT(EPOCH FROM recorded_at)::float8 FROM order_events
         WHERE order_id = ANY($1)",
    )
    .bind(uuids(orders))
    .fetch_all(pool)
    .await?;
    let mut placed = BTreeMap::new();
    let mut approved = BTreeMap::new();
    let mut rejected = 0;
    for (id, kind, at) in rows {
        match kind.as_str() {
            "OrderPlaced" => {
                placed.insert(id, at);
            }
            "OrderApproved" => {
                approved.insert(id, at);
            }
            "OrderRejected" => rejected += 1,
            _ => {}
        }
    }
    let latency: Samples = approved
        .iter()
        .filter_map(|(id, a)| {
            placed
                .get(id)
                .map(|p| Duration::from_secs_f64((a - p).max(0.0)))
        })
        .collect();
    let first = placed.values().copied().fold(f64::INFINITY, f64::min);
    let last = approved.values().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(Outcome {
        approved: approved.len(),
        rejected,
        latency,
        throughput: approved.len() as f64 / (last - first),
    })
}

/// `xact_commit` of each database.
async fn commits(
    admin: &PgPool,
    databases: &[(Service, String)],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let names: Vec<String> = databases.iter().map(|(_, d)| d.clone()).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT datname::text, xact_commit FROM pg_stat_database WHERE datname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(admin)
    .await?;
    Ok(rows.into_iter().collect())
}

/// WAL fsyncs and bytes of the whole cluster so far (`pg_stat_wal`).
async fn wal(admin: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(
        sqlx::query_as("SELECT wal_sync, wal_bytes::bigint FROM pg_stat_wal")
            .fetch_one(admin)
            .await?,
    )
}

/// Backends publish their statistics at most once a second while busy and within ~10 s
/// when idle: read until two readings a second apart agree (or 15 s passed).
async fn settled_commits(
    admin: &PgPool,
    databases: &[(Service, String)],
    before: &BTreeMap<String, i64>,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut last = commits(admin, databases).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ticker = tokio::time::interval(Duration::from_millis(1500));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = commits(admin, databases).await?;
        // Background work (relay polls, retry scans) keeps adding a few; "settled" is
        // a change under 0.5% of the saga's commits.
        let sum = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
        if (sum(&now) - sum(&last)) * 200 <= sum(&now) - sum(before) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Average rows per relay transaction and messages per consumer transaction in one
/// service's database (rows of one transaction share its `now()`).
async fn batch_sizes(pool: &PgPool) -> anyhow::Result<(f64, f64)> {
    let (rows, txs): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT delivered_at) FROM outbox WHERE delivered_at IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    let (msgs, ctxs): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (consumer_group, received_at)) FROM inbox")
            .fetch_one(pool)
            .await?;
    Ok((
        rows as f64 / txs.max(1) as f64,
        msgs as f64 / ctxs.max(1) as f64,
    ))
}
