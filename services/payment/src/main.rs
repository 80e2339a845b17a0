//! The payment-service binary: configuration from `--config FILE` and `APP_*` environment
//! variables (see the crate docs and docs/participants.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use payment_service::{App, Config, SERVICE_NAME};

#[derive(Parser)]
#[command(version, about = "The payment participant of the order saga")]
struct Args {
    /// TOML configuration file; `APP_*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: Config =
        saga_service_kit::config::load(args.config.as_deref()).context("loading configuration")?;
    saga_service_kit::telemetry::init(SERVICE_NAME);
    let shutdown = saga_service_kit::shutdown::signal_token();
    let app = App::build(config)
        .await
        .context("starting payment-service")?;
    tracing::info!(addr = %app.local_addr(), "payment-service started");
    app.run(shutdown).await.context("payment-service failed")?;
    Ok(())
}
