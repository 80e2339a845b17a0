//! What a component of the stack is: a name, an optional long-running process, a health
//! check, and idempotent setup that runs once the process answers.

use std::path::PathBuf;

use async_trait::async_trait;
use nix::sys::signal::Signal;

use crate::config::StackConfig;
use crate::error::StackError;

/// Result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// How to launch a component's process. The supervisor adds the detaching, the pid file,
/// the log file and the port checks.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Removed from the inherited environment (e.g. variables the program would read
    /// instead of our flags).
    pub env_remove: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Run as this uid/gid (PostgreSQL refuses to run as root).
    pub user: Option<(u32, u32)>,
    /// Ports that must be free before the process starts.
    pub ports: Vec<u16>,
    /// Sent first on stop; SIGKILL follows after the stop timeout.
    pub stop_signal: Signal,
}

impl ProcessSpec {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            cwd: None,
            user: None,
            ports: Vec::new(),
            stop_signal: Signal::SIGTERM,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// The name the kernel reports for the process (`/proc/<pid>/comm`, 15 bytes), used to
    /// tell our process from an unrelated one that reused a stale pid.
    pub fn comm(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.chars().take(15).collect()
    }
}

/// A named part of the stack. Components are started in the order they were pushed onto the
/// [`crate::Stack`] and stopped in reverse.
#[async_trait]
pub trait Component: Send + Sync {
    fn name(&self) -> &str;

    /// `Some(reason)` when the component cannot run here (e.g. its binary is not built);
    /// the stack skips it and says why.
    fn disabled_reason(&self, _cfg: &StackConfig) -> Option<String> {
        None
    }

    /// Idempotent on-disk preparation before the first start (e.g. `initdb`).
    async fn prepare(&self, _cfg: &StackConfig) -> Result<(), StackError> {
        Ok(())
    }

    /// The long-running process; `None` for a one-shot component (e.g. topic creation).
    fn process(&self, cfg: &StackConfig) -> Result<Option<ProcessSpec>, StackError>;

    async fn health(&self, cfg: &StackConfig) -> Health;

    /// Idempotent setup once the process is healthy (roles, databases, topics). Runs on
    /// every `up`, so a stack whose setup was interrupted is completed by the next `up`.
    async fn after_start(&self, _cfg: &StackConfig) -> Result<(), StackError> {
        Ok(())
    }
}
