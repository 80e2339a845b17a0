//! `cargo xtask test`: the README's test command. Starts a private stack (temporary data
//! directory, free ports) with the same supervisor as `up`, runs `cargo test --workspace`
//! with the `SAGA_*` variables pointing at it, tears it down, and returns the tests' status.

use std::process::{ExitCode, Stdio};

use anyhow::Context;
use saga_stack::{Stack, StackConfig};

pub(crate) async fn run(extra: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // Build the binaries first so HTTP components (e.g. the schema registry) are found and
    // started by the stack.
    let build = tokio::process::Command::new(&cargo)
        .args(["build", "--workspace", "--bins"])
        .status()
        .await
        .context("run cargo build")?;
    if !build.success() {
        return Ok(ExitCode::FAILURE);
    }

    let dir = tempfile::Builder::new()
        .prefix("saga-xtask-test-")
        .tempdir()
        .context("create temporary stack directory")?;
    let stack = Stack::new(StackConfig::private(dir.path())?);
    let started = std::time::Instant::now();
    let up = stack.up().await;
    if let Err(err) = up {
        let _ = stack.down().await;
        return Err(err).context("start the private test stack");
    }
    eprintln!(
        "test stack up in {:.1}s at {} ({})",
        started.elapsed().as_secs_f64(),
        dir.path().display(),
        stack
            .env()
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut cmd = tokio::process::Command::new(&cargo);
    cmd.arg("test");
    // `cargo xtask test -p NAME` narrows the run; otherwise the whole workspace.
    if !extra
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package") || a == "--workspace")
    {
        cmd.arg("--workspace");
    }
    // Every failing test binary in one run, not only the first: a CI log then shows all
    // that is wrong at once.
    if !extra.iter().any(|a| a == "--no-fail-fast") {
        cmd.arg("--no-fail-fast");
    }
    cmd.args(extra)
        .envs(stack.env().vars())
        .env("SAGA_STACK_DIR", dir.path())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().context("run cargo test")?;
    let status = tokio::select! {
        status = child.wait() => Some(status.context("wait for cargo test")?),
        // The stack lives in its own process group, so Ctrl-C does not reach it: stop it here.
        _ = tokio::signal::ctrl_c() => {
            let _ = child.kill().await;
            None
        }
    };
    stack.down().await?;
    drop(dir);
    let passed = matches!(status, Some(status) if status.success());
    // The plain command (no arguments: the whole suite, as CI runs it) ends with the short
    // chaos soak, on a stack of its own (it kills the broker and PostgreSQL).
    // SAGA_SKIP_SOAK=1 leaves it out.
    if passed && extra.is_empty() && std::env::var("SAGA_SKIP_SOAK").map_or(true, |v| v != "1") {
        eprintln!("tests passed; short chaos soak (docs/soak.md; SAGA_SKIP_SOAK=1 skips it)");
        let args: Vec<String> = crate::soak::SHORT.iter().map(|s| (*s).to_owned()).collect();
        return crate::soak::run_built(&args).await;
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
