//! `cargo xtask demo`: brings the stack up, then shows it working. Until the services exist
//! the "demo" is a proof of the infrastructure: a keyed message through the broker and each
//! database reachable by its own role only. The saga demo replaces [`infra_proof`] later.

use std::process::ExitCode;

use saga_stack::Stack;
use saga_stack::proof::{check_role_isolation, kafka_roundtrip};

pub(crate) async fn run(stack: &Stack) -> anyhow::Result<ExitCode> {
    crate::up(stack).await?;
    println!();
    let ok = infra_proof(stack).await;
    println!();
    if ok {
        println!("demo passed. Stop the stack with `cargo xtask down`.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED (see above; logs: `cargo xtask logs <component>`).");
        Ok(ExitCode::FAILURE)
    }
}

/// Prints each check; true when all passed.
pub(crate) async fn infra_proof(stack: &Stack) -> bool {
    let cfg = stack.config();
    let mut ok = true;
    println!("broker: producing one keyed message (idempotent, acks=all) and consuming it");
    match kafka_roundtrip(&cfg.kafka_bootstrap()).await {
        Ok((partition, offset, key, payload)) => {
            println!("  ok: key {key} -> partition {partition} offset {offset}: {payload:?}")
        }
        Err(err) => {
            ok = false;
            println!("  FAILED: {err}");
        }
    }
    println!("postgres: each service role on its own database, then on another's");
    for check in check_role_isolation(cfg).await {
        let verdict = if check.passed() { "ok" } else { "FAILED" };
        let what = match &check.result {
            Ok(()) => "connected".to_owned(),
            Err(e) => format!("refused ({})", e.lines().next().unwrap_or_default()),
        };
        println!(
            "  {verdict}: {:<18} -> {:<16} {what}",
            check.role, check.database
        );
        ok &= check.passed();
    }
    ok
}
