//! `cargo xtask rewind`: reprocessing for the local stack. Looks the group up in the suite's
//! declared list (`saga_stack::CONSUMER_GROUPS`: its topic, the service that runs it and
//! holds its inbox, whether its handler is a projection), refuses while that service runs
//! (its consumers `assign()` partitions, so the broker cannot tell that they are live),
//! then runs `saga-rewind` (`saga_consumer::rewind`) with the stack's broker and the
//! service's database. docs/messaging.md ("Reprocessing") is the operator procedure.

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args};
use saga_stack::{CONSUMER_GROUPS, GroupHandler, SagaService};

use crate::StackArgs;

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_offset", "to_time", "by"])))]
pub(crate) struct RewindArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Consumer group, e.g. `payment-service` or `orchestrator.payment.events`.
    #[arg(long)]
    group: String,
    /// The topic to rewind, e.g. `payment.commands`.
    #[arg(long)]
    topic: String,
    /// The same offset (next message to read) on every partition.
    #[arg(long)]
    to_offset: Option<i64>,
    /// The first message at or after this time (RFC 3339), per partition.
    #[arg(long)]
    to_time: Option<String>,
    /// As `--to-time` now minus this much: `90s`, `15m`, `1h`, `2d`.
    #[arg(long)]
    by: Option<String>,
    /// Print what would be reprocessed per partition; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Clear the range's inbox entries so it is applied again (projections only).
    #[arg(long)]
    reapply: bool,
    /// Stop the group's service first and start it again after the rewind.
    #[arg(long)]
    restart_service: bool,
}

pub(crate) async fn run(args: &RewindArgs) -> anyhow::Result<ExitCode> {
    let Some(declared) = CONSUMER_GROUPS.iter().find(|g| g.group == args.group) else {
        let known: Vec<String> = CONSUMER_GROUPS
            .iter()
            .map(|g| format!("{} ({})", g.group, g.topic))
            .collect();
        anyhow::bail!(
            "{} is not a consumer group of the suite; one of: {}",
            args.group,
            known.join(", ")
        );
    };
    anyhow::ensure!(
        declared.topic == args.topic,
        "group {} reads {}, not {}",
        declared.group,
        declared.topic,
        args.topic
    );
    let service = SagaService::named(declared.service)
        .with_context(|| format!("service {} of group {}", declared.service, declared.group))?;
    let stack = args.stack.stack();
    let cfg = stack.config();
    let running = stack.pid(service.name)?;
    let mut restart = false;
    if let Some(pid) = running {
        if args.dry_run {
            println!(
                "note: {} runs (pid {pid}); a real rewind needs it stopped (--restart-service)",
                service.name
            );
        } else if args.restart_service {
            println!("stopping {} (pid {pid})", service.name);
            stack.stop_component(service.name).await?;
            restart = true;
        } else {
            anyhow::bail!(
                "{} runs (pid {pid}) and consumes group {}: stop it first (its consumers would \
                 commit their position over the rewound one), or pass --restart-service",
                service.name,
                declared.group
            );
        }
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "saga-consumer",
        "--bin",
        "saga-rewind",
        "--",
    ])
    .args(["--bootstrap", &cfg.kafka_bootstrap()])
    .args(["--group", declared.group, "--topic", declared.topic])
    .args(["--database-url", &cfg.pg_url(service.database)]);
    if let Some(offset) = args.to_offset {
        cmd.args(["--to-offset", &offset.to_string()]);
    }
    if let Some(time) = &args.to_time {
        cmd.args(["--to-time", time]);
    }
    if let Some(ago) = &args.by {
        cmd.args(["--by", ago]);
    }
    if args.dry_run {
        cmd.arg("--dry-run");
    }
    if args.reapply {
        cmd.arg("--reapply");
    }
    if declared.handler == GroupHandler::Projection {
        cmd.arg("--projection");
    }
    let status = cmd.status().await.context("run saga-rewind")?;
    if restart {
        println!("starting {}", service.name);
        stack.up_component(service.name).await?;
    }
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
