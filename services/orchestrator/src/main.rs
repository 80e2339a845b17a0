//! `orchestrator-service`: configured by an optional TOML file (`--config PATH` or
//! `APP_CONFIG_FILE`) and `APP_` environment variables (`APP_DATABASE__URL`, ...).

use std::path::PathBuf;

use anyhow::Context;
use orchestrator_service::{App, Config};
use saga_service_kit::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = config_file_arg();
    let config: Config = config::load(file.as_deref()).context("loading configuration")?;
    telemetry::init("orchestrator-service");
    let app = App::build(config)
        .await
        .context("starting orchestrator-service")?;
    if let Some(addr) = app.local_addr() {
        tracing::info!(%addr, "orchestrator-service ready");
    }
    app.run(shutdown::signal_token())
        .await
        .context("orchestrator-service stopped with an error")
}

/// `--config PATH`; the environment's `APP_CONFIG_FILE` is read by `config::load` itself.
fn config_file_arg() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
    }
    None
}
