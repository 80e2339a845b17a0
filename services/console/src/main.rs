//! The console binary: configuration from `--config FILE` and `APP_*` environment variables
//! (see the crate docs), then [`console::App`] until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use console::{App, Config};

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
            saga_service_kit::telemetry::init("console");
            let shutdown = saga_service_kit::shutdown::signal_token();
            let app = App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "console started");
            app.run(shutdown).await.context("console failed")
        })
}
