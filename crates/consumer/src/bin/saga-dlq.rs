//! `saga-dlq`: list, show and replay dead letters (also `cargo xtask dlq ...`).

use clap::{Parser, Subcommand};
use saga_consumer::dead_letters;
use saga_kafka::KafkaConfig;

#[derive(Parser)]
#[command(about = "Inspect and replay the dead-letter topic")]
struct Cli {
    #[arg(long, env = "SAGA_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    bootstrap: String,
    #[arg(long, default_value = saga_kafka::topics::DEAD_LETTERS)]
    topic: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One line per dead letter: id (partition:offset), source, group, kind, error.
    List {
        /// Only those from this consumer group.
        #[arg(long)]
        group: Option<String>,
    },
    /// One dead letter with all its headers, as JSON.
    Show { id: String },
    /// Re-publish dead letters to their source topic.
    Replay {
        /// `partition:offset` of one dead letter.
        id: Option<String>,
        /// Replay every dead letter (of `--group`, if given).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        group: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let kafka = KafkaConfig {
        bootstrap_servers: cli.bootstrap,
        ..KafkaConfig::default()
    };
    let letters = dead_letters::list(&kafka, &cli.topic).await?;
    let of_group = |group: &Option<String>, l: &dead_letters::DeadLetter| {
        group
            .as_deref()
            .is_none_or(|g| l.header(dead_letters::CONSUMER_GROUP) == Some(g))
    };
    match cli.command {
        Command::List { group } => {
            for l in letters.iter().filter(|l| of_group(&group, l)) {
                println!(
                    "{}\t{}:{}:{}\t{}\t{}\t{}",
                    l.id(),
                    l.source_topic().unwrap_or("?"),
                    l.header(dead_letters::SOURCE_PARTITION).unwrap_or("?"),
                    l.header(dead_letters::SOURCE_OFFSET).unwrap_or("?"),
                    l.header(dead_letters::CONSUMER_GROUP).unwrap_or("?"),
                    l.header(dead_letters::KIND).unwrap_or("?"),
                    l.error().unwrap_or("?"),
                );
            }
        }
        Command::Show { id } => {
            let letter = letters
                .iter()
                .find(|l| l.id() == id)
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
            println!("{}", serde_json::to_string_pretty(letter)?);
        }
        Command::Replay { id, all, group } => {
            let chosen: Vec<_> = letters
                .iter()
                .filter(|l| of_group(&group, l))
                .filter(|l| all || id.as_deref() == Some(l.id().as_str()))
                .collect();
            anyhow::ensure!(
                !chosen.is_empty(),
                "nothing to replay (give an id or --all)"
            );
            for l in chosen {
                dead_letters::replay(&kafka, l).await?;
                println!("replayed {} to {}", l.id(), l.source_topic().unwrap_or("?"));
            }
        }
    }
    Ok(())
}
