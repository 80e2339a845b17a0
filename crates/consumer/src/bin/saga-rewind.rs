//! `saga-rewind`: rewind a stopped consumer group on one topic to an offset or a time
//! (`saga_consumer::rewind`). `cargo xtask rewind` runs it with the local stack's broker and
//! the owning service's database, and knows which groups are projections.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Parser};
use saga_consumer::rewind::{self, HandlerKind, Request, Target};
use saga_kafka::KafkaConfig;

#[derive(Parser)]
#[command(about = "Rewind a stopped consumer group's offsets on one topic (reprocessing)")]
#[command(group(ArgGroup::new("target").required(true).args(["to_offset", "to_time", "by"])))]
struct Cli {
    #[arg(long, env = "SAGA_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    bootstrap: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    topic: String,
    /// The same offset (next message to read) on every partition.
    #[arg(long)]
    to_offset: Option<i64>,
    /// The first message at or after this time (RFC 3339), per partition.
    #[arg(long)]
    to_time: Option<DateTime<Utc>>,
    /// As `--to-time` now minus this much: `90s`, `15m`, `1h`, `2d`.
    #[arg(long, value_parser = parse_ago)]
    by: Option<chrono::Duration>,
    /// Print what would be reprocessed per partition and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete the range's inbox entries so the messages are applied again (projections only).
    #[arg(long)]
    reapply: bool,
    /// The group's handler is a projection (rewrites derived data, moves no money or stock).
    /// `cargo xtask rewind` sets this from the suite's declared list.
    #[arg(long)]
    projection: bool,
    /// The database holding the group's inbox: counts what is already applied; needed for
    /// `--reapply`.
    #[arg(long, env = "SAGA_REWIND_DATABASE_URL")]
    database_url: Option<String>,
}

fn parse_ago(s: &str) -> Result<chrono::Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: give a unit (s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    match unit {
        "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        _ => Err(format!("{s:?}: the unit is one of s, m, h, d")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = match (cli.to_offset, cli.to_time, cli.by) {
        (Some(o), _, _) => Target::Offset(o),
        (_, Some(t), _) => Target::Time(t),
        (_, _, Some(ago)) => Target::Time(Utc::now() - ago),
        _ => unreachable!("clap requires one target"),
    };
    let kafka = KafkaConfig {
        bootstrap_servers: cli.bootstrap,
        ..KafkaConfig::default()
    };
    let pool = match &cli.database_url {
        Some(url) => Some(sqlx::PgPool::connect(url).await?),
        None => None,
    };
    let request = Request {
        group: cli.group,
        topic: cli.topic,
        target,
        handler: if cli.projection {
            HandlerKind::Projection
        } else {
            HandlerKind::Effects
        },
        reapply: cli.reapply,
    };
    if cli.dry_run {
        // The refusals a real run would meet, reported but not fatal to the preview.
        if let Err(refused) = rewind::check(&kafka, pool.as_ref(), &request).await {
            println!("a rewind now would be refused: {refused}");
        }
        let plan = rewind::plan(&kafka, pool.as_ref(), &request).await?;
        println!("dry run: nothing changed");
        println!("{plan}");
    } else {
        let plan = rewind::rewind(&kafka, pool.as_ref(), &request).await?;
        println!("{plan}");
        println!("rewound: start the group's service to reprocess");
    }
    Ok(())
}
