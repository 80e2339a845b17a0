//! API fuzzing with schemathesis (PyPI): every request its OpenAPI document allows is sent to
//! a service, and any 5xx or answer the document does not describe fails the run.
//!
//! schemathesis lives in a virtualenv under `~/.cache/saga-suite`, installed on first use
//! (Debian's `python3-venv` through the stack's apt helper when `python3 -m venv` is missing),
//! pinned so a new release cannot change what CI checks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The schemathesis release the suite is checked with.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Test cases per operation and phase: enough to find a wrong document in a few minutes of
/// CI on 2 cores (`SAGA_FUZZ_MAX_EXAMPLES` raises it for a longer local run).
pub const DEFAULT_MAX_EXAMPLES: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("set up schemathesis: {0}")]
    Setup(String),
    #[error("run schemathesis: {0}")]
    Io(#[from] std::io::Error),
    #[error("schemathesis found problems in {service} ({status}); its output is above")]
    Failed {
        service: String,
        status: std::process::ExitStatus,
    },
}

fn venv_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/saga-suite")
        .join(format!("schemathesis-{SCHEMATHESIS_VERSION}"))
}

/// The `st` executable, installed into its virtualenv when missing.
pub fn schemathesis() -> Result<PathBuf, FuzzError> {
    let venv = venv_dir();
    let st = venv.join("bin/st");
    if st.is_file() {
        return Ok(st);
    }
    if !make_venv(&venv)? {
        saga_stack::apt::install("schemathesis", &["python3-venv"])
            .map_err(|e| FuzzError::Setup(e.to_string()))?;
        if !make_venv(&venv)? {
            return Err(FuzzError::Setup(format!(
                "python3 -m venv {} failed after installing python3-venv",
                venv.display()
            )));
        }
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}"))
        .status()?;
    if !pip.success() || !st.is_file() {
        // A half-made virtualenv would be taken for a good one next time.
        let _ = std::fs::remove_dir_all(&venv);
        return Err(FuzzError::Setup(format!(
            "pip install schemathesis=={SCHEMATHESIS_VERSION} failed ({pip})"
        )));
    }
    Ok(st)
}

fn make_venv(venv: &Path) -> Result<bool, FuzzError> {
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .status()?;
    Ok(status.success() && venv.join("bin/pip").is_file())
}

/// One schemathesis run against `base_url`'s document (`{base_url}/openapi.json`), with the
/// admin token on every request. `config` is a schemathesis.toml (deploy/schemathesis.toml).
pub fn run(
    st: &Path,
    config: &Path,
    service: &str,
    base_url: &str,
    admin_token: &str,
) -> Result<(), FuzzError> {
    let max_examples = std::env::var("SAGA_FUZZ_MAX_EXAMPLES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(DEFAULT_MAX_EXAMPLES);
    eprintln!("schemathesis: {service} at {base_url} ({max_examples} examples per operation)");
    let status = Command::new(st)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{base_url}/openapi.json"))
        .args(["--checks", "all"])
        .args(["--max-examples", &max_examples.to_string()])
        // Fixed: a failure found in CI is found again by the same command locally.
        .args(["--seed", "1"])
        // One worker: hypothesis on CPython 3.11 fails with "AST constructor recursion depth
        // mismatch" when two threads describe strategies at once.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {admin_token}")])
        .args(["--output-truncate", "false"])
        .env("NO_COLOR", "1")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(FuzzError::Failed {
            service: service.to_owned(),
            status,
        })
    }
}
