//! `schema-registry [--config FILE]`: configuration from the file and `APP_*` variables.

use std::path::PathBuf;

use clap::Parser;
use saga_service_kit::{config, shutdown, telemetry};
use schema_registry::{App, Config};

#[derive(Parser)]
#[command(about = "Confluent-compatible Avro schema registry backed by Postgres")]
struct Args {
    /// TOML configuration file (else $APP_CONFIG_FILE); APP_* variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init("schema-registry");
    let config: Config = config::load(args.config.as_deref())?;
    tracing::info!(?config, "starting");
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "schema registry ready");
    app.run(shutdown::signal_token()).await?;
    Ok(())
}
