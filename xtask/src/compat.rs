//! `cargo xtask compat`: the schema compatibility gate. The gate lives in saga-contracts
//! (`schema-compat` bin, owned with the schemas); this only runs it, so xtask does not build
//! the codec's dependencies.

use std::process::{Command, ExitCode};

use clap::Args;

#[derive(Args)]
pub struct CompatArgs {
    /// Git revision whose history holds the earlier versions of each schema.
    #[arg(long, default_value = "main")]
    against: String,
}

pub fn run(args: &CompatArgs) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "run",
            "-q",
            "-p",
            "saga-contracts",
            "--bin",
            "schema-compat",
            "--",
        ])
        .args(["--against", &args.against])
        .status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
