//! `cargo xtask soak`: builds the workspace binaries and runs the chaos soak (`saga-soak`
//! from the saga-e2e crate) on a private stack of its own; arguments are passed on
//! (`cargo xtask soak -- --help`). See docs/soak.md.

use std::process::{ExitCode, Stdio};

use anyhow::Context;

/// The short soak of `cargo xtask test` (CI): a few hundred orders, every fault at least
/// once, a few minutes.
pub(crate) const SHORT: &[&str] = &["--short", "--report-dir", "target/soak-short"];

pub(crate) async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The services, the registry and saga-soak itself.
    let build = tokio::process::Command::new(&cargo)
        .args(["build", "--workspace", "--bins"])
        .status()
        .await
        .context("run cargo build")?;
    if !build.success() {
        return Ok(ExitCode::FAILURE);
    }
    run_built(args).await
}

/// Runs the built `saga-soak` (the workspace binaries must be built).
pub(crate) async fn run_built(args: &[String]) -> anyhow::Result<ExitCode> {
    let bin = saga_stack::StackConfig::defaults()
        .target_dir
        .join("debug")
        .join("saga-soak");
    let mut child = tokio::process::Command::new(&bin)
        .args(args)
        .current_dir(saga_stack::workspace_root())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("run {}", bin.display()))?;
    let status = tokio::select! {
        status = child.wait() => Some(status.context("wait for saga-soak")?),
        _ = tokio::signal::ctrl_c() => {
            // saga-soak's stack has a watchdog that tears it down when saga-soak exits.
            let _ = child.kill().await;
            None
        }
    };
    Ok(match status {
        Some(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
