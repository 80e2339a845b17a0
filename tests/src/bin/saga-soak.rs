//! `saga-soak`: the chaos soak on a private stack (`cargo xtask soak` builds and runs it).
//! Prints the Markdown report, writes it and the JSON next to each other, and exits 1 when an
//! invariant is violated. See docs/soak.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use saga_e2e::Service;
use saga_e2e::soak::{self, FaultKind, SoakConfig};

#[derive(Parser)]
#[command(name = "saga-soak", about = "Chaos soak of the order saga suite")]
struct Args {
    /// Orders to place (ignored when --duration is given).
    #[arg(long, default_value_t = 2_000)]
    orders: usize,
    /// Orders per second, evenly spaced.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Place orders for this many seconds instead (orders = rate x duration).
    #[arg(long)]
    duration: Option<f64>,
    /// Seed of the order mix and the fault schedule; the same seed gives the same run plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject: `all`, `none`, or a comma-separated list of kill-service,
    /// kill-broker, restart-postgres, cut-network, cut-broker, duplicates, poison, stall.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Shortest and longest time between the starts of two faults, seconds.
    #[arg(long, default_value_t = 5.0)]
    gap_min: f64,
    #[arg(long, default_value_t = 15.0)]
    gap_max: f64,
    /// How long the suite may take to drain after the load, seconds.
    #[arg(long, default_value_t = 300.0)]
    drain_timeout: f64,
    /// The services' consumer fetch wait, ms.
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u32,
    /// Slowest sagas to show with their timelines.
    #[arg(long, default_value_t = 5)]
    slowest: usize,
    /// The orchestrator's deadline of each undoable step, seconds; a stall lasts 3-6 s longer.
    #[arg(long, default_value_t = 15.0)]
    step_deadline: f64,
    /// Services that run a standby instance (no consumers: HTTP, relay, retry and deadline
    /// task): `none`, or a comma-separated list of order, orchestrator.
    #[arg(long, default_value = "order,orchestrator")]
    standbys: String,
    /// Test only: the payment service refunds twice (the soak must then fail).
    #[arg(long)]
    double_refund: bool,
    /// The short soak of CI (`cargo xtask test`): 300 orders at 5/s, a fault every 2-4 s
    /// (every fault at least once), seed 42 unless given.
    #[arg(long)]
    short: bool,
    /// Where to write soak-report.md and soak-report.json.
    #[arg(long, default_value = "target/soak")]
    report_dir: PathBuf,
}

fn parse_faults(s: &str) -> Result<Vec<FaultKind>, String> {
    match s {
        "all" => Ok(FaultKind::ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|f| {
                FaultKind::parse(f.trim()).ok_or_else(|| {
                    format!(
                        "unknown fault `{f}`; one of: {}",
                        FaultKind::ALL.map(FaultKind::name).join(", ")
                    )
                })
            })
            .collect(),
    }
}

fn parse_standbys(s: &str) -> Result<Vec<Service>, String> {
    if s == "none" || s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|name| {
            let name = name.trim();
            soak::STANDBY_SERVICES
                .into_iter()
                .find(|service| soak::service_name(*service) == name)
                .ok_or_else(|| {
                    format!("no standby for `{name}`; one of: order, orchestrator (docs/soak.md)")
                })
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.short {
        args.orders = 300;
        args.rate = 5.0;
        args.duration = None;
        args.gap_min = 2.0;
        args.gap_max = 4.0;
        if !std::env::args().any(|a| a == "--seed" || a.starts_with("--seed=")) {
            args.seed = 42;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "saga_e2e=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let faults = match parse_faults(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let standbys = match parse_standbys(&args.standbys) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let orders = match args.duration {
        Some(secs) => (secs * args.rate).round() as usize,
        None => args.orders,
    };
    let cfg = SoakConfig {
        orders,
        rate: args.rate,
        seed: args.seed,
        faults,
        gap: (
            Duration::from_secs_f64(args.gap_min),
            Duration::from_secs_f64(args.gap_max.max(args.gap_min)),
        ),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        fetch_wait_max_ms: args.fetch_wait_ms,
        double_refund: args.double_refund,
        slowest: args.slowest,
        step_deadline: Duration::from_secs_f64(args.step_deadline),
        standbys,
    };
    let report = match soak::run_on_private_stack(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let markdown = report.to_markdown();
    println!("{markdown}");
    let written = std::fs::create_dir_all(&args.report_dir)
        .and_then(|()| std::fs::write(args.report_dir.join("soak-report.md"), &markdown))
        .and_then(|()| {
            let json = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
            std::fs::write(args.report_dir.join("soak-report.json"), json)
        });
    match written {
        Ok(()) => eprintln!(
            "report written to {}/soak-report.{{md,json}}",
            args.report_dir.display()
        ),
        Err(e) => eprintln!(
            "error: write the report to {}: {e}",
            args.report_dir.display()
        ),
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("soak FAILED: {}", report.failed().join(", "));
        ExitCode::FAILURE
    }
}
