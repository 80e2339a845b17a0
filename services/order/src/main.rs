//! `order-service`: configured by `--config FILE` and/or `APP_*` environment variables.
//! `order-service replay` rebuilds the read model from the event log and exits.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use order_service::{App, Config};

#[derive(Parser)]
#[command(version, about = "Order service of the saga suite")]
struct Cli {
    /// TOML configuration file (also `APP_CONFIG_FILE`); `APP_*` variables override it.
    #[arg(long, env = "APP_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve (the default).
    Serve,
    /// Rebuild the order_summaries read model from order_events, then exit.
    Replay,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    saga_service_kit::telemetry::init("order-service");
    let config: Config = saga_service_kit::config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => {
            let app = App::build(config).await?;
            app.run(saga_service_kit::shutdown::signal_token()).await?;
        }
        Cmd::Replay => {
            let pool = saga_service_kit::db::connect(&config.database).await?;
            order_service::migrate(&pool).await?;
            let n = order_service::projection::rebuild(&pool).await?;
            tracing::info!(events_replayed = n, "read model rebuilt");
        }
    }
    Ok(())
}
