//! The lag-exporter binary: configuration from `--config FILE` and `APP_*` environment
//! variables (see the crate docs), then [`lag_exporter::App`] until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use lag_exporter::{App, Config};

fn main() -> anyhow::Result<()> {
    let file = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(PathBuf::from);
    let config: Config =
        saga_service_kit::config::load(file.as_deref()).context("loading configuration")?;
    tokio::runtime::Runtime::new()
        .context("starting the Tokio runtime")?
        .block_on(async move {
            saga_service_kit::telemetry::init("lag-exporter");
            let shutdown = saga_service_kit::shutdown::signal_token();
            let app = App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "lag-exporter started");
            app.run(shutdown).await.context("lag-exporter failed")
        })
}
