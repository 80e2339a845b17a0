//! `cargo xtask bench [messaging|saga|fold|all]`: builds the benchmarks in release mode, starts a
//! private stack (temporary data directory, free ports, like `xtask test`), runs them with
//! the `SAGA_*` variables pointing at it, prints their tables and tears the stack down.
//! A private stack keeps the figures free of whatever else a developer's `up` stack is doing.

use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::{Args, ValueEnum};
use saga_stack::{Stack, StackConfig};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Which {
    Messaging,
    Saga,
    /// Order fold time against stream length, with and without snapshots.
    Fold,
    All,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Cargo profile of the benchmark binaries (`dev` builds faster, measures less truly).
    #[arg(long, default_value = "release")]
    profile: String,
    /// Extra arguments for the benchmark binary, e.g. `-- --rates 500,1000`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The stack starts the schema registry from the debug build (it is only asked for
    // schema ids at start, then cached); the benchmarks themselves run at `profile`.
    // Only the benchmark asked for: a release link of the other one is minutes here.
    let bins: &[&str] = match args.which {
        Which::Messaging => &["--bin", "bench-messaging"],
        Which::Saga => &["--bin", "bench-saga"],
        Which::Fold => &["--bin", "bench-fold"],
        Which::All => &["--bins"],
    };
    let bench_build: Vec<&str> = ["build", "-p", "saga-bench", "--profile", &args.profile]
        .into_iter()
        .chain(bins.iter().copied())
        .collect();
    let steps: [&[&str]; 2] = [
        &["build", "-p", "schema-registry", "--bin", "schema-registry"],
        &bench_build,
    ];
    for step in steps {
        let status = tokio::process::Command::new(&cargo)
            .args(step)
            .status()
            .await
            .context("run cargo build")?;
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("saga-xtask-bench-")
        .tempdir()
        .context("create temporary stack directory")?;
    let config = StackConfig::private(dir.path())?;
    let profile_dir = if args.profile == "dev" {
        "debug"
    } else {
        &args.profile
    };
    let bin_dir = config.target_dir.join(profile_dir);
    let stack = Stack::new(config);
    if let Err(err) = stack.up().await {
        let _ = stack.down().await;
        return Err(err).context("start the private benchmark stack");
    }

    let benches: &[&str] = match args.which {
        Which::Messaging => &["bench-messaging"],
        Which::Saga => &["bench-saga"],
        Which::Fold => &["bench-fold"],
        Which::All => &["bench-messaging", "bench-saga", "bench-fold"],
    };
    let mut ok = true;
    for bench in benches {
        let bin = bin_dir.join(bench);
        if !bin.exists() {
            eprintln!("{} is not built yet; skipped", bin.display());
            ok = false;
            continue;
        }
        let mut child = tokio::process::Command::new(&bin)
            .args(&args.args)
            .envs(stack.env().vars())
            .env("SAGA_STACK_DIR", dir.path())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("run {}", bin.display()))?;
        let status = tokio::select! {
            status = child.wait() => Some(status.context("wait for the benchmark")?),
            // The stack lives in its own process group, so Ctrl-C does not reach it.
            _ = tokio::signal::ctrl_c() => {
                let _ = child.kill().await;
                None
            }
        };
        match status {
            Some(s) if s.success() => {}
            Some(_) => ok = false,
            None => {
                ok = false;
                break;
            }
        }
    }
    stack.down().await?;
    drop(dir);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
