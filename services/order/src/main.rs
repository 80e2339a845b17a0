//! The order-service binary: configuration from `--config FILE` and `APP_*` environment
//! variables (see the crate docs and docs/order-service.md). The read model is rebuilt by
//! `POST /admin/projections/order_summaries/rebuild`.

use order_service::{App, Config};

fn main() -> anyhow::Result<()> {
    saga_runtime::main::<Config, _, _, _>(
        "Order service of the saga suite",
        |config, shutdown| async move {
            let app = App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "order-service started");
            app.run(shutdown).await
        },
    )
}
