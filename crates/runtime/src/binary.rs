//! The body of every service binary.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::ServiceConfig;

/// Parses `--config FILE`, loads `C` (file, then `APP_*` variables), initialises telemetry,
/// and calls `run` with the config and a token cancelled on SIGINT/SIGTERM. For `fn main`:
/// `saga_runtime::main::<Config, _, _, _>("...", |config, shutdown| async move { .. })`.
pub fn main<C, R, Fut, E>(about: &'static str, run: R) -> anyhow::Result<()>
where
    C: ServiceConfig,
    R: FnOnce(C, tokio_util::sync::CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let args = clap::Command::new(C::NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file; `APP_*` environment variables override it."),
        )
        .get_matches();
    let file = args.get_one::<PathBuf>("config");
    let config: C =
        crate::config::load(file.map(PathBuf::as_path)).context("loading configuration")?;
    tokio::runtime::Runtime::new()
        .context("starting the Tokio runtime")?
        .block_on(async move {
            saga_service_kit::telemetry::init(C::NAME);
            let shutdown = saga_service_kit::shutdown::signal_token();
            run(config, shutdown)
                .await
                .with_context(|| format!("{} failed", C::NAME))
        })
}
