//! `bench-messaging`: the messaging kit's figures.
//!
//! For each fetch wait and each offered rate, in one run: contract messages are committed
//! to the outbox (one transaction each, open loop at the rate), the real [`Relay`] publishes
//! them, the real [`Consumer`] runtime applies them with a trivial handler (inbox claim and
//! commit included). Beside it, at the same rate, a plain rdkafka producer sends to a
//! consumer with the same client settings: the broker's own hop. Then, per fetch wait, a
//! `max` run: rows committed first, then the relay and consumer let loose on the backlog.
//!
//! Latency of the pipeline = outbox commit returned -> handler called (so it includes the
//! relay's wake-up, its claim transaction, the broker hop and decoding). Latency of the hop
//! = `send()` called -> message received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use saga_bench::cpu::{Usage, Watch};
use saga_bench::hop::HopProbe;
use saga_bench::stats::{Samples, ms};
use saga_consumer::{Consumer, ConsumerConfig, Handler, HandlerError, Incoming, Membership};
use saga_contracts::{Codec, InventoryCommand, Metadata, OrderId, ReserveStock, Sku, StockLine};
use saga_kafka::KafkaConfig;
use saga_outbox::{Outbox, Relay, RelayConfig};
use saga_testkit::TestStack;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(name = "bench-messaging", about)]
struct Args {
    /// Offered rates (messages/s), each run for `--duration-secs`.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    rates: Vec<u32>,
    /// Consumer `fetch.wait.max.ms` values; every rate runs under each.
    #[arg(long, value_delimiter = ',', default_value = "10,1,100")]
    fetch_wait_ms: Vec<u32>,
    /// Under these fetch waits only the middle rate runs (keeps the default run short).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    short_variants: bool,
    #[arg(long, default_value_t = 8)]
    duration_secs: u64,
    /// Rows in the backlog of the `max` run (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    max_messages: usize,
    /// Concurrent enqueue transactions (the connection pool is this plus a few).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Relay rows per claim transaction.
    #[arg(long, default_value_t = 500)]
    relay_batch: i64,
    /// Consumer runtime: most messages of one partition per transaction.
    #[arg(long, default_value_t = 200)]
    consumer_batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_bench::init_logging();
    let args = Args::parse();
    let stack = TestStack::get().await;
    let registry = stack
        .registry_url()
        .context("SAGA_REGISTRY_URL is not set: the benchmark needs the schema registry")?;
    let codec = Codec::new(registry);
    codec.register_all().await.context("register schemas")?;
    let watch = Watch::stack(&[]);

    println!("# messaging benchmark");
    println!(
        "machine: {} cores; broker {}; CPU from {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        stack.kafka_bootstrap(),
        watch.source
    );
    println!(
        "relay batch {} rows, consumer batch {} messages, {} concurrent enqueue transactions, {} s per rate",
        args.relay_batch, args.consumer_batch, args.concurrency, args.duration_secs
    );
    println!();
    println!(
        "| fetch wait ms | offered/s | achieved/s | commit->consumer p50 / p99 ms | broker hop p50 / p99 ms | relay rows/tx | consumer msgs/tx | CPU % of a core | machine busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");

    let mut max_rows = Vec::new();
    for (i, &wait) in args.fetch_wait_ms.iter().enumerate() {
        let rates: Vec<u32> = if i > 0 && args.short_variants && args.rates.len() > 1 {
            vec![args.rates[args.rates.len() / 2]]
        } else {
            args.rates.clone()
        };
        for rate in rates {
            let mut bench = Bench::start(stack, &codec, &args, wait).await?;
            let row = bench.rate_run(&args, rate, &watch).await;
            bench.stop().await;
            let row = row?;
            println!("{}", row.markdown());
        }
        if args.max_messages > 0 && i == 0 {
            let mut bench = Bench::start(stack, &codec, &args, wait).await?;
            let row = bench.max_run(&args, &watch).await;
            bench.stop().await;
            max_rows.push(row?);
        }
    }
    if !max_rows.is_empty() {
        println!();
        println!(
            "| fetch wait ms | backlog rows | enqueue (1 tx each)/s | relay published/s | consumer applied/s | broker alone produce->consume/s | relay rows/tx | consumer msgs/tx | CPU % of a core |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for row in max_rows {
            println!("{}", row.markdown());
        }
    }
    Ok(())
}

/// Arrival times seen by the handler, keyed by message id (first call only: a batch that
/// is re-run after a failure calls the handler again).
#[derive(Clone, Default)]
struct Seen {
    at: Arc<Mutex<HashMap<Uuid, Instant>>>,
    count: Arc<AtomicU64>,
}

struct BenchHandler(Seen);

impl Handler for BenchHandler {
    type Message = InventoryCommand;

    async fn handle(
        &self,
        _tx: &mut saga_consumer::Tx<'_>,
        msg: &Incoming<InventoryCommand>,
    ) -> Result<(), HandlerError> {
        let now = Instant::now();
        let id = *msg.meta().message_id.as_uuid();
        let mut at = self.0.at.lock().expect("seen lock");
        if let std::collections::hash_map::Entry::Vacant(e) = at.entry(id) {
            e.insert(now);
            self.0.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// One scenario's world: a fresh database, fresh topics, a consumer runtime running and a
/// broker-hop consumer running; the relay is started by the run (the `max` run starts it
/// only once the backlog is committed).
struct Bench {
    db: saga_testkit::TestDb,
    pool: PgPool,
    kafka: KafkaConfig,
    outbox: Outbox,
    seen: Seen,
    hop: HopProbe,
    group: String,
    token: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bench {
    async fn start(
        stack: &TestStack,
        codec: &Codec,
        args: &Args,
        fetch_wait_ms: u32,
    ) -> anyhow::Result<Bench> {
        let db = stack.fresh_database().await;
        let pool = PgPoolOptions::new()
            .max_connections(args.concurrency as u32 + 8)
            .connect(&db.url)
            .await?;
        saga_service_kit::db::migrate(&pool, &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR])
            .await?;
        let kafka = KafkaConfig {
            bootstrap_servers: stack.kafka_bootstrap().to_owned(),
            fetch_wait_max_ms: fetch_wait_ms,
            topic_prefix: format!("bench{}.", Uuid::new_v4().simple()),
            statistics_interval_ms: 0,
            ..KafkaConfig::default()
        };
        let topics = [
            kafka.topic(saga_contracts::topics::INVENTORY_COMMANDS),
            kafka.topic(saga_contracts::topics::DEAD_LETTERS),
        ];
        let specs: Vec<(&str, i32)> = topics
            .iter()
            .map(|t| (t.as_str(), saga_kafka::DEFAULT_PARTITIONS))
            .collect();
        saga_kafka::admin::ensure_topics(&kafka, &specs).await?;

        let token = CancellationToken::new();
        let seen = Seen::default();
        let group = format!("bench-{}", Uuid::new_v4().simple());
        let consumer = Consumer::new(
            &kafka,
            ConsumerConfig {
                membership: Membership::Assign,
                max_batch: args.consumer_batch,
                ..ConsumerConfig::new(group.clone())
            },
            pool.clone(),
            codec.clone(),
            BenchHandler(seen.clone()),
        )?;
        let mut tasks = Vec::new();
        let t = token.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = consumer.run(t).await {
                eprintln!("consumer stopped: {e}");
            }
        }));

        let hop = HopProbe::start(&kafka, "hop", token.clone()).await?;

        Ok(Bench {
            db,
            pool,
            kafka,
            outbox: Outbox::new(codec.clone()),
            seen,
            hop,
            group,
            token,
            tasks,
        })
    }

    fn relay(&self, args: &Args) -> anyhow::Result<Relay> {
        Ok(Relay::new(
            self.pool.clone(),
            &self.kafka,
            RelayConfig {
                batch_size: args.relay_batch,
                ..RelayConfig::default()
            },
        )?)
    }

    fn spawn_relay(&mut self, args: &Args) -> anyhow::Result<()> {
        let relay = self.relay(args)?;
        let t = self.token.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = relay.run(t).await {
                eprintln!("relay stopped: {e}");
            }
        }));
        Ok(())
    }

    /// Commit one message to the outbox; returns its id and when the commit returned.
    async fn enqueue(pool: &PgPool, outbox: &Outbox) -> anyhow::Result<(Uuid, Instant)> {
        let msg = ReserveStock {
            meta: Metadata::first(OrderId::new()),
            lines: vec![StockLine {
                sku: Sku::parse("SKU-BENCH-1")?,
                quantity: 1,
            }],
        };
        let mut tx = pool.begin().await?;
        outbox.send(&mut tx, &msg).await?;
        tx.commit().await?;
        Ok((*msg.meta.message_id.as_uuid(), Instant::now()))
    }

    /// Warm both paths (connections, schema ids, consumer positions) and wait until each
    /// delivered something, then forget the warm-up samples.
    async fn warm_up(&self, args: &Args, relay_running: bool) -> anyhow::Result<()> {
        for _ in 0..20 {
            Self::enqueue(&self.pool, &self.outbox).await?;
            self.hop.send();
        }
        if !relay_running {
            self.relay(args)?.drain_once().await?;
        }
        let seen = &self.seen.count;
        let hop = &self.hop;
        saga_testkit::wait_until(Duration::from_secs(60), || async {
            seen.load(Ordering::Relaxed) >= 20 && hop.received() >= 20
        })
        .await
        .map_err(|_| anyhow::anyhow!("warm-up messages did not arrive within 60 s"))?;
        self.seen.at.lock().expect("seen lock").clear();
        self.seen.count.store(0, Ordering::Relaxed);
        self.hop.take();
        sqlx::query("DELETE FROM outbox")
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM inbox").execute(&self.pool).await?;
        Ok(())
    }

    /// Open loop at `rate` for the configured duration, then wait for every message.
    async fn rate_run(&mut self, args: &Args, rate: u32, watch: &Watch) -> anyhow::Result<RateRow> {
        self.spawn_relay(args)?;
        self.warm_up(args, true).await?;
        let hops_before = self.hop.received();

        let total = u64::from(rate) * args.duration_secs;
        let permits = Arc::new(Semaphore::new(args.concurrency));
        let commits = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
        let mut inflight = tokio::task::JoinSet::new();
        let cpu_from = watch.read();
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(5));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut issued = 0u64;
        while issued < total {
            ticker.tick().await;
            let due = ((started.elapsed().as_secs_f64() * f64::from(rate)) as u64).min(total);
            while issued < due {
                issued += 1;
                self.hop.send();
                // When every connection is busy the loop falls behind the offered rate; the
                // achieved rate shows it.
                let permit = permits.clone().acquire_owned().await?;
                let (pool, outbox, commits) =
                    (self.pool.clone(), self.outbox.clone(), commits.clone());
                inflight.spawn(async move {
                    let result = Self::enqueue(&pool, &outbox).await;
                    drop(permit);
                    match result {
                        Ok(c) => commits.lock().expect("commits lock").push(c),
                        Err(e) => eprintln!("enqueue failed: {e:#}"),
                    }
                });
            }
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
        let enqueue_secs = started.elapsed().as_secs_f64();
        let committed = commits.lock().expect("commits lock").len() as u64;
        self.wait_delivered(committed, hops_before + total).await?;
        let cpu = watch.usage(&cpu_from, &watch.read());

        let seen = self.seen.at.lock().expect("seen lock").clone();
        let latency: Samples = commits
            .lock()
            .expect("commits lock")
            .iter()
            .filter_map(|(id, committed)| {
                seen.get(id)
                    .map(|s| s.saturating_duration_since(*committed))
            })
            .collect();
        let hop = self.hop.take();
        let (relay_tx, consumer_tx) = self.batch_sizes().await?;
        Ok(RateRow {
            fetch_wait_ms: self.kafka.fetch_wait_max_ms,
            offered: rate,
            achieved: committed as f64 / enqueue_secs,
            latency,
            hop,
            relay_tx,
            consumer_tx,
            cpu,
        })
    }

    /// Wait until the handler saw `messages` messages and the hop consumer `hops`, failing
    /// only when progress stops for 30 s.
    async fn wait_delivered(&self, messages: u64, hops: u64) -> anyhow::Result<()> {
        let progress = || self.seen.count.load(Ordering::Relaxed) + self.hop.received();
        let mut last = progress();
        loop {
            let done =
                self.seen.count.load(Ordering::Relaxed) >= messages && self.hop.received() >= hops;
            if done {
                return Ok(());
            }
            let moved = saga_testkit::wait_until(Duration::from_secs(30), || async {
                progress() != last
                    || (self.seen.count.load(Ordering::Relaxed) >= messages
                        && self.hop.received() >= hops)
            })
            .await;
            if moved.is_err() {
                anyhow::bail!(
                    "stalled: handler saw {} of {messages}, hop consumer {} of {hops}",
                    self.seen.count.load(Ordering::Relaxed),
                    self.hop.received()
                );
            }
            last = progress();
        }
    }

    /// Average rows per relay transaction (rows marked delivered in one transaction share
    /// its `now()`) and messages per consumer transaction (likewise for the inbox).
    async fn batch_sizes(&self) -> anyhow::Result<(f64, f64)> {
        let (rows, txs): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT delivered_at) FROM outbox WHERE delivered_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let (msgs, ctxs): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT received_at) FROM inbox WHERE consumer_group = $1",
        )
        .bind(&self.group)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            rows as f64 / txs.max(1) as f64,
            msgs as f64 / ctxs.max(1) as f64,
        ))
    }

    /// A committed backlog, then the relay and consumer let loose on it; then the broker
    /// alone with as many messages produced as fast as possible.
    async fn max_run(&mut self, args: &Args, watch: &Watch) -> anyhow::Result<MaxRow> {
        self.warm_up(args, false).await?;
        let total = args.max_messages;

        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (pool, outbox, next) = (self.pool.clone(), self.outbox.clone(), next.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                        if let Err(e) = Self::enqueue(&pool, &outbox).await {
                            eprintln!("enqueue failed: {e:#}");
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await?;
        }
        let enqueue_rate = total as f64 / started.elapsed().as_secs_f64();

        let cpu_from = watch.read();
        let started = Instant::now();
        self.spawn_relay(args)?;
        let mut relay_done = None;
        let mut consumer_done = None;
        let mut last_progress = (Instant::now(), 0u64);
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        while relay_done.is_none() || consumer_done.is_none() {
            poll.tick().await;
            if relay_done.is_none() && saga_outbox::relay::stats(&self.pool).await?.pending == 0 {
                relay_done = Some(started.elapsed());
            }
            let seen = self.seen.count.load(Ordering::Relaxed);
            if consumer_done.is_none() && seen >= total as u64 {
                consumer_done = Some(started.elapsed());
            }
            if seen != last_progress.1 {
                last_progress = (Instant::now(), seen);
            } else if last_progress.0.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("max run stalled: consumer applied {seen} of {total}");
            }
        }
        let cpu = watch.usage(&cpu_from, &watch.read());
        let (relay_tx, consumer_tx) = self.batch_sizes().await?;

        let started = Instant::now();
        let hops_before = self.hop.received();
        for _ in 0..total {
            self.hop.send();
        }
        // A broker that cannot keep up is a figure, not a failure of the run.
        let broker_rate = match self
            .hop
            .wait_received(hops_before + total as u64, Duration::from_secs(30))
            .await
        {
            Ok(()) => total as f64 / started.elapsed().as_secs_f64(),
            Err(e) => {
                eprintln!("broker alone: {e:#}");
                f64::NAN
            }
        };

        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        Ok(MaxRow {
            fetch_wait_ms: self.kafka.fetch_wait_max_ms,
            rows: total,
            enqueue_rate,
            relay_rate: total as f64 / secs(relay_done),
            consumer_rate: total as f64 / secs(consumer_done),
            broker_rate,
            relay_tx,
            consumer_tx,
            cpu,
        })
    }

    async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.pool.close().await;
        let _ = self.db.drop_db().await;
    }
}

struct RateRow {
    fetch_wait_ms: u32,
    offered: u32,
    achieved: f64,
    latency: Samples,
    hop: Samples,
    relay_tx: f64,
    consumer_tx: f64,
    cpu: Usage,
}

fn p50_p99(s: &Samples) -> String {
    s.summary()
        .map_or("-".to_owned(), |s| format!("{} / {}", ms(s.p50), ms(s.p99)))
}

impl RateRow {
    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {} | {:.0}% |",
            self.fetch_wait_ms,
            self.offered,
            self.achieved,
            p50_p99(&self.latency),
            p50_p99(&self.hop),
            self.relay_tx,
            self.consumer_tx,
            self.cpu.compact(),
            self.cpu.machine_busy_pct
        )
    }
}

struct MaxRow {
    fetch_wait_ms: u32,
    rows: usize,
    enqueue_rate: f64,
    relay_rate: f64,
    consumer_rate: f64,
    broker_rate: f64,
    relay_tx: f64,
    consumer_tx: f64,
    cpu: Usage,
}

impl MaxRow {
    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            self.fetch_wait_ms,
            self.rows,
            self.enqueue_rate,
            self.relay_rate,
            self.consumer_rate,
            self.broker_rate,
            self.relay_tx,
            self.consumer_tx,
            self.cpu.compact()
        )
    }
}
