//! The payment-service binary: configuration from `--config FILE` and `APP_*` environment
//! variables (see the crate docs and docs/participants.md).

use payment_service::{App, Config};

fn main() -> anyhow::Result<()> {
    saga_runtime::main::<Config, _, _, _>(
        "The payment participant of the order saga",
        |config, shutdown| async move {
            let app = App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "payment-service started");
            app.run(shutdown).await
        },
    )
}
