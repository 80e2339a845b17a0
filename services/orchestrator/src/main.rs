//! `orchestrator-service`: configured by an optional TOML file (`--config PATH` or
//! `APP_CONFIG_FILE`) and `APP_` environment variables (`APP_DATABASE__URL`, ...).

use orchestrator_service::{App, Config};

fn main() -> anyhow::Result<()> {
    saga_runtime::main::<Config, _, _, _>(
        "The orchestrator of the order saga",
        |config, shutdown| async move {
            let app = App::build(config).await?;
            if let Some(addr) = app.local_addr() {
                tracing::info!(%addr, "orchestrator-service started");
            }
            app.run(shutdown).await
        },
    )
}
