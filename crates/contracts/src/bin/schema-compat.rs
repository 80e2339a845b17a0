//! The compatibility gate: `cargo run -p saga-contracts --bin schema-compat [-- --against REV]`.
//! Exits 1 and names the schema, the earlier version, the field and the rule on a violation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use saga_contracts::compat;

/// Check every schema in schemas/ against every earlier version of it in the history of a git
/// revision, under the mode schemas/compatibility.toml gives it.
#[derive(Parser)]
struct Args {
    /// Repository root (contains schemas/).
    #[arg(long, default_value_os_t = default_repo())]
    repo: PathBuf,
    /// Revision whose history holds the earlier versions.
    #[arg(long, default_value = "main")]
    against: String,
}

fn default_repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match compat::run(&args.repo, &args.against) {
        Ok(report) => {
            let versions: usize = report.checked.iter().map(|(_, _, n)| n).sum();
            for v in &report.violations {
                eprintln!("INCOMPATIBLE {v}");
            }
            if report.is_ok() {
                println!(
                    "schema-compat: {} schemas checked against {versions} earlier versions on {}: compatible",
                    report.checked.len(),
                    args.against
                );
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "schema-compat: {} violation(s) in {} schemas",
                    report.violations.len(),
                    report.checked.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("schema-compat: could not run: {e}");
            ExitCode::from(2)
        }
    }
}
