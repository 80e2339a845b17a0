//! `cargo xtask`: the local stack tool. `up`, `down`, `status` and `logs` drive the
//! `saga-stack` supervisor on the data directory (infrastructure, schema registry and the five
//! saga services); `test` runs the workspace tests against a private throw-away stack; `demo`
//! brings the suite up and drives one order along each saga path.

mod bench;
mod compat;
mod demo;
mod soak;
mod test_cmd;

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use saga_stack::{Health, ProcessState, Stack, StackConfig, SuiteOptions, UpOutcome};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Local stack and developer tasks for the saga suite"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the services, start PostgreSQL, the broker, the topics, the schema registry and
    /// the five saga services; harmless when up.
    Up {
        #[command(flatten)]
        stack: StackArgs,
        /// Start what is built without running `cargo build` first.
        #[arg(long)]
        no_build: bool,
    },
    /// Stop exactly the processes `up` started.
    Down(StackArgs),
    /// Each component's process and health; exits 1 when something enabled is unhealthy.
    Status(StackArgs),
    /// Print a component's log (`postgres`, `broker`, `order`, `orchestrator`, ...).
    Logs {
        #[command(flatten)]
        stack: StackArgs,
        component: String,
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
    },
    /// Run `cargo test --workspace` against a private stack (temp dir, free ports).
    Test {
        /// Extra arguments for `cargo test`, e.g. `-- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bring the suite up, place one order along each saga path and print each saga.
    Demo(StackArgs),
    /// Dead letters of the stack's broker: `list`, `show ID`, `replay ID|--all` (saga-dlq).
    Dlq {
        #[command(flatten)]
        stack: StackArgs,
        /// Arguments for saga-dlq, e.g. `list` or `replay --all`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check every schema in schemas/ against its earlier versions on main (compatibility gate).
    Compat(compat::CompatArgs),
    /// Build the benchmarks (release), run them on a private stack, print their tables.
    Bench(bench::BenchArgs),
    /// Chaos soak on a private stack: orders at a steady rate while services, broker and
    /// PostgreSQL are killed and restarted; then the books are checked (docs/soak.md).
    Soak {
        /// Arguments for saga-soak, e.g. `--orders 10000 --rate 12 --seed 7` (`-- --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Every port and path of the stack; defaults in docs/architecture.md.
#[derive(Args, Clone)]
pub(crate) struct StackArgs {
    /// Data directory (pid files, logs, databases, broker storage).
    #[arg(long, env = "SAGA_STACK_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "SAGA_PG_PORT", default_value_t = 55432)]
    pg_port: u16,
    #[arg(long, env = "SAGA_KAFKA_PORT", default_value_t = 19092)]
    kafka_port: u16,
    #[arg(long, env = "SAGA_REGISTRY_PORT", default_value_t = 18081)]
    registry_port: u16,
    #[arg(long, env = "SAGA_LAG_EXPORTER_PORT", default_value_t = saga_stack::DEFAULT_LAG_EXPORTER_PORT)]
    lag_exporter_port: u16,
    #[arg(long, env = "SAGA_PROMETHEUS_PORT", default_value_t = saga_stack::DEFAULT_PROMETHEUS_PORT)]
    prometheus_port: u16,
    /// tansu binary; built there (cargo install, pinned version) when absent.
    #[arg(long, env = "SAGA_TANSU_BIN")]
    tansu_bin: Option<PathBuf>,
    /// Directory with PostgreSQL's initdb and postgres; searched for when absent.
    #[arg(long, env = "SAGA_PG_BIN_DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// The services' consumer `fetch.wait.max.ms`: per-hop latency on tansu versus idle
    /// broker CPU (docs/local-stack.md).
    #[arg(long, env = "SAGA_FETCH_WAIT_MS", default_value_t = SuiteOptions::default().fetch_wait_max_ms)]
    fetch_wait_ms: u32,
    /// Countries the shipping service serves (comma-separated ISO codes).
    #[arg(long, value_delimiter = ',', default_value = "DE,FR,NL,GB,US")]
    pub(crate) served_countries: Vec<String>,
}

impl StackArgs {
    fn config(&self) -> StackConfig {
        let mut cfg = StackConfig::defaults();
        if let Some(dir) = &self.data_dir {
            cfg.data_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        }
        cfg.host = self.host.clone();
        cfg.pg_port = self.pg_port;
        cfg.kafka_port = self.kafka_port;
        cfg.registry_port = self.registry_port;
        cfg.lag_exporter_port = self.lag_exporter_port;
        cfg.prometheus_port = self.prometheus_port;
        if let Some(bin) = &self.tansu_bin {
            cfg.tansu_bin = bin.clone();
        }
        cfg.pg_bin_dir = self.pg_bin_dir.clone();
        cfg
    }

    fn suite_options(&self) -> SuiteOptions {
        SuiteOptions {
            fetch_wait_max_ms: self.fetch_wait_ms,
            served_countries: self.served_countries.clone(),
            ..SuiteOptions::default()
        }
    }

    /// The whole suite; `down`, `status` and `logs` must see the services too.
    pub(crate) fn stack(&self) -> Stack {
        Stack::suite(self.config(), &self.suite_options())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { stack, no_build } => up_suite(&stack.stack(), !no_build).await,
        Cmd::Down(args) => down(&args.stack()).await.map(|()| ExitCode::SUCCESS),
        Cmd::Status(args) => status(&args.stack()).await,
        Cmd::Logs {
            stack,
            component,
            lines,
            follow,
        } => logs(&stack.stack(), &component, lines, follow).await,
        Cmd::Test { args } => test_cmd::run(&args).await,
        Cmd::Demo(args) => demo::run(&args).await,
        Cmd::Dlq { stack, args } => dlq(&stack.stack(), &args).await,
        Cmd::Compat(args) => compat::run(&args),
        Cmd::Bench(args) => bench::run(&args).await,
        Cmd::Soak { args } => soak::run(&args).await,
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// `cargo build` of the registry and the five services (debug, as `HttpService` expects),
/// then `up`. The build is a no-op check when nothing changed.
pub(crate) async fn up_suite(stack: &Stack, build: bool) -> anyhow::Result<ExitCode> {
    // On a new machine the broker build (release, minutes) runs beside the services' build
    // instead of after it: both have long single-crate stretches that leave a core idle.
    let tansu_bin = stack.config().tansu_bin.clone();
    let broker = tokio::task::spawn_blocking(move || saga_stack::ensure_tansu(&tansu_bin));
    if build && !build_suite().await? {
        return Ok(ExitCode::FAILURE);
    }
    broker.await.context("broker build task")??;
    up(stack).await?;
    Ok(ExitCode::SUCCESS)
}

async fn build_suite() -> anyhow::Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.arg("build");
    for bin in saga_stack::suite_binaries() {
        cmd.args(["-p", bin]);
    }
    let started = std::time::Instant::now();
    let status = cmd.status().await.context("run cargo build")?;
    if status.success() {
        println!("services built in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(status.success())
}

/// `saga-dlq` against this stack's broker, built and run by cargo.
async fn dlq(stack: &Stack, args: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = tokio::process::Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "-p",
            "saga-consumer",
            "--bin",
            "saga-dlq",
            "--",
        ])
        .args(["--bootstrap", &stack.config().kafka_bootstrap()])
        .args(args)
        .status()
        .await
        .context("run saga-dlq")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn up(stack: &Stack) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let report = stack.up().await?;
    for (name, outcome) in report {
        let line = match outcome {
            UpOutcome::Started { pid: Some(pid) } => format!("started (pid {pid})"),
            UpOutcome::Started { pid: None } => "done".to_owned(),
            UpOutcome::AlreadyRunning { pid } => {
                format!(
                    "already running{}",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                )
            }
            UpOutcome::RestartedAfterStalePid { stale_pid, pid } => {
                format!("started (pid {pid}); removed stale pid file of dead pid {stale_pid}")
            }
            UpOutcome::Skipped(reason) => format!("skipped: {reason}"),
        };
        println!("{name:<16} {line}");
    }
    let cfg = stack.config();
    println!(
        "stack up in {:.1}s; environment in {}",
        started.elapsed().as_secs_f64(),
        cfg.env_file().display()
    );
    for (key, value) in stack.env().vars() {
        println!("  {key}={value}");
    }
    Ok(())
}

async fn down(stack: &Stack) -> anyhow::Result<()> {
    for (name, state) in stack.down().await? {
        let line = match state {
            ProcessState::Running(pid) => format!("stopped (pid {pid})"),
            ProcessState::NotRunning => "not running".to_owned(),
            ProcessState::Stale(pid) => {
                format!("was not running (removed stale pid file of {pid})")
            }
        };
        println!("{name:<16} {line}");
    }
    Ok(())
}

async fn status(stack: &Stack) -> anyhow::Result<ExitCode> {
    let mut all_healthy = true;
    for status in stack.status().await? {
        let pid = match status.process {
            _ if status.disabled.is_some() => "-".to_owned(),
            Some(ProcessState::Running(pid)) => format!("pid {pid}"),
            Some(ProcessState::Stale(pid)) => format!("stale {pid}"),
            Some(ProcessState::NotRunning) => "-".to_owned(),
            None => "one-shot".to_owned(),
        };
        let health = match (&status.disabled, &status.health) {
            (Some(reason), _) => format!("disabled ({reason})"),
            (None, Health::Healthy) => "healthy".to_owned(),
            (None, Health::Unhealthy(why)) => {
                all_healthy = false;
                format!("UNHEALTHY: {why}")
            }
        };
        println!("{:<16} {pid:<12} {health}", status.name);
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn logs(
    stack: &Stack,
    component: &str,
    lines: usize,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    if !stack.component_names().contains(&component) {
        anyhow::bail!(
            "unknown component `{component}`; one of: {}",
            stack.component_names().join(", ")
        );
    }
    let path = stack.log_file(component);
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("{line}");
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = file.stream_position()?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let len = file.metadata()?.len();
        if len < pos {
            pos = 0; // truncated
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut chunk = String::new();
            file.read_to_string(&mut chunk)?;
            print!("{chunk}");
            pos = len;
        }
    }
}
