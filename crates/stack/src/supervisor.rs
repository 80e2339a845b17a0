//! The [`Stack`]: starts components in order, stops them in reverse, reports their health.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;
use crate::process::{self, ProcessState};
use crate::{Broker, HttpService, Postgres, Topics};

/// How long a stopping process gets before SIGKILL. PostgreSQL's shutdown checkpoint took
/// over 12 s on the CI disks (slow fsync); killing it mid-checkpoint only costs recovery.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What `up` did for one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpOutcome {
    Started {
        pid: Option<u32>,
    },
    AlreadyRunning {
        pid: Option<u32>,
    },
    /// A pid file named a process that no longer runs; it was removed and the component
    /// started again.
    RestartedAfterStalePid {
        stale_pid: u32,
        pid: u32,
    },
    Skipped(String),
}

/// One line of `status`.
#[derive(Debug, Clone)]
pub struct ComponentStatus {
    pub name: String,
    pub process: Option<ProcessState>,
    pub health: Health,
    pub disabled: Option<String>,
}

/// The `SAGA_*` variables of a running stack, as written to `<data dir>/stack.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEnv {
    pub pg_url: String,
    pub kafka_bootstrap: String,
    pub registry_url: Option<String>,
    /// The registry's write password (`SAGA_REGISTRY_PASSWORD`; the user is
    /// `SAGA_REGISTRY_USER`, [`crate::REGISTRY_USERNAME`]), when it could be read or created.
    pub registry_password: Option<String>,
    /// The services' admin token (`SAGA_ADMIN_TOKEN`), when it could be read or created.
    pub admin_token: Option<String>,
    /// `SAGA_LAG_EXPORTER_URL`, when the stack has the lag exporter.
    pub lag_exporter_url: Option<String>,
    /// `SAGA_PROMETHEUS_URL`, when the stack has Prometheus.
    pub prometheus_url: Option<String>,
}

impl StackEnv {
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("SAGA_PG_URL", self.pg_url.clone()),
            ("SAGA_KAFKA_BOOTSTRAP", self.kafka_bootstrap.clone()),
        ];
        if let Some(url) = &self.registry_url {
            vars.push(("SAGA_REGISTRY_URL", url.clone()));
            if let Some(password) = &self.registry_password {
                vars.push(("SAGA_REGISTRY_USER", crate::REGISTRY_USERNAME.to_owned()));
                vars.push(("SAGA_REGISTRY_PASSWORD", password.clone()));
            }
        }
        if let Some(token) = &self.admin_token {
            vars.push(("SAGA_ADMIN_TOKEN", token.clone()));
        }
        if let Some(url) = &self.lag_exporter_url {
            vars.push(("SAGA_LAG_EXPORTER_URL", url.clone()));
        }
        if let Some(url) = &self.prometheus_url {
            vars.push(("SAGA_PROMETHEUS_URL", url.clone()));
        }
        vars
    }
}

/// A supervisor of named components under one data directory.
pub struct Stack {
    cfg: StackConfig,
    components: Vec<Box<dyn Component>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("cfg", &self.cfg)
            .field("components", &self.component_names())
            .finish()
    }
}

impl Stack {
    /// The suite's stack: postgres, broker, topics, and the schema registry when its binary
    /// is built.
    pub fn new(cfg: StackConfig) -> Self {
        let registry = HttpService::new("schema-registry", "schema-registry", cfg.registry_port)
            .database("registry_db")
            .registry_server();
        Self::empty(cfg)
            .push(Postgres)
            .push(Broker)
            .push(Topics)
            .push(registry)
    }

    /// A stack without components, for callers that assemble their own.
    pub fn empty(cfg: StackConfig) -> Self {
        Self {
            cfg,
            components: Vec::new(),
        }
    }

    /// Adds a component that starts after every component already pushed.
    pub fn push(mut self, component: impl Component + 'static) -> Self {
        self.components.push(Box::new(component));
        self
    }

    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    pub fn component_names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name()).collect()
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.cfg.run_dir().join(format!("{name}.pid"))
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.cfg.log_dir().join(format!("{name}.log"))
    }

    fn find(&self, name: &str) -> Result<&dyn Component, StackError> {
        self.components
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.as_ref())
            .ok_or_else(|| StackError::UnknownComponent(name.to_owned()))
    }

    /// The running pid of a component, from its pid file.
    pub fn pid(&self, name: &str) -> Result<Option<u32>, StackError> {
        let component = self.find(name)?;
        let Some(spec) = component.process(&self.cfg)? else {
            return Ok(None);
        };
        Ok(match process::state(&self.pid_file(name), &spec.comm()) {
            ProcessState::Running(pid) => Some(pid),
            _ => None,
        })
    }

    /// Starts every enabled component that is not already running, in order, and writes
    /// `stack.env`. Running it twice is harmless.
    pub async fn up(&self) -> Result<Vec<(String, UpOutcome)>, StackError> {
        process::ensure_dir(&self.cfg.data_dir)?;
        process::ensure_dir(&self.cfg.run_dir())?;
        process::ensure_dir(&self.cfg.log_dir())?;
        let mut report = Vec::new();
        for component in &self.components {
            let outcome = self.up_one(component.as_ref()).await?;
            report.push((component.name().to_owned(), outcome));
        }
        self.write_env_file().await?;
        Ok(report)
    }

    /// Starts one component (its dependencies must be up).
    pub async fn up_component(&self, name: &str) -> Result<UpOutcome, StackError> {
        self.up_one(self.find(name)?).await
    }

    async fn up_one(&self, component: &dyn Component) -> Result<UpOutcome, StackError> {
        let name = component.name();
        if let Some(reason) = component.disabled_reason(&self.cfg) {
            return Ok(UpOutcome::Skipped(reason));
        }
        let outcome = match component.process(&self.cfg)? {
            None => UpOutcome::Started { pid: None },
            Some(spec) => self.start_process(component, &spec).await?,
        };
        component.after_start(&self.cfg).await?;
        // One-shot components are "healthy" once their setup is visible.
        if matches!(outcome, UpOutcome::Started { pid: None }) {
            self.wait_healthy(component, None).await?;
        }
        tracing::info!(component = name, ?outcome, "up");
        Ok(outcome)
    }

    async fn start_process(
        &self,
        component: &dyn Component,
        spec: &ProcessSpec,
    ) -> Result<UpOutcome, StackError> {
        let name = component.name();
        let pid_file = self.pid_file(name);
        let mut stale = None;
        match process::state(&pid_file, &spec.comm()) {
            ProcessState::Running(pid) => {
                // Already up (or still starting from a previous `up`): just wait for it.
                self.wait_healthy(component, Some(pid)).await?;
                return Ok(UpOutcome::AlreadyRunning { pid: Some(pid) });
            }
            ProcessState::Stale(pid) => {
                tracing::warn!(component = name, pid, "removing stale pid file");
                let _ = std::fs::remove_file(&pid_file);
                stale = Some(pid);
            }
            ProcessState::NotRunning => {}
        }
        for &port in &spec.ports {
            // Connections of a just-killed previous instance keep its port for a moment
            // (FIN_WAIT); only then is a short wait worth it, otherwise fail at once.
            let grace = if stale.is_some() {
                Duration::from_secs(15)
            } else {
                Duration::ZERO
            };
            let deadline = Instant::now() + grace;
            while process::port_taken(&self.cfg.host, port) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if process::port_taken(&self.cfg.host, port) {
                return Err(StackError::PortInUse {
                    component: name.to_owned(),
                    host: self.cfg.host.clone(),
                    port,
                });
            }
        }
        component.prepare(&self.cfg).await?;
        // Preparing may have installed the program, which changes where it is found.
        let spec = component
            .process(&self.cfg)?
            .unwrap_or_else(|| spec.clone());
        let spec = &spec;
        let pid = process::spawn_detached(spec, &self.log_file(name), &pid_file)?;
        if let Err(err) = self.wait_healthy(component, Some(pid)).await {
            // Do not leave a half-started process behind a failed `up`.
            process::stop_pid(pid, spec.stop_signal, Duration::from_secs(5)).await;
            let _ = std::fs::remove_file(&pid_file);
            return Err(err);
        }
        Ok(match stale {
            Some(stale_pid) => UpOutcome::RestartedAfterStalePid { stale_pid, pid },
            None => UpOutcome::Started { pid: Some(pid) },
        })
    }

    async fn wait_healthy(
        &self,
        component: &dyn Component,
        pid: Option<u32>,
    ) -> Result<(), StackError> {
        let name = component.name();
        let deadline = Instant::now() + self.cfg.start_timeout;
        loop {
            let health = component.health(&self.cfg).await;
            let Health::Unhealthy(last) = health else {
                return Ok(());
            };
            if let Some(pid) = pid
                && !process::is_alive(pid)
            {
                let log = self.log_file(name);
                return Err(StackError::ExitedDuringStart {
                    component: name.to_owned(),
                    status: format!("pid {pid} is gone"),
                    tail: process::tail(&log, 20),
                    log,
                });
            }
            if Instant::now() >= deadline {
                return Err(StackError::Unhealthy {
                    component: name.to_owned(),
                    secs: self.cfg.start_timeout.as_secs(),
                    last,
                    log: self.log_file(name),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops exactly the processes whose pid files this stack wrote, in reverse order.
    pub async fn down(&self) -> Result<Vec<(String, ProcessState)>, StackError> {
        let mut report = Vec::new();
        for component in self.components.iter().rev() {
            let name = component.name();
            let Some(spec) = component.process(&self.cfg)? else {
                continue;
            };
            let pid_file = self.pid_file(name);
            let state = process::state(&pid_file, &spec.comm());
            if let ProcessState::Running(pid) = state {
                process::stop_pid(pid, spec.stop_signal, STOP_TIMEOUT).await;
            }
            let _ = std::fs::remove_file(&pid_file);
            report.push((name.to_owned(), state));
        }
        let _ = std::fs::remove_file(self.cfg.env_file());
        Ok(report)
    }

    /// Stops one component's process (used by tests that restart the broker).
    pub async fn stop_component(&self, name: &str) -> Result<ProcessState, StackError> {
        let component = self.find(name)?;
        let Some(spec) = component.process(&self.cfg)? else {
            return Ok(ProcessState::NotRunning);
        };
        let pid_file = self.pid_file(name);
        let state = process::state(&pid_file, &spec.comm());
        if let ProcessState::Running(pid) = state {
            process::stop_pid(pid, spec.stop_signal, STOP_TIMEOUT).await;
        }
        let _ = std::fs::remove_file(&pid_file);
        Ok(state)
    }

    /// Each component's process state and current health.
    pub async fn status(&self) -> Result<Vec<ComponentStatus>, StackError> {
        let mut out = Vec::new();
        for component in &self.components {
            let name = component.name().to_owned();
            if let Some(reason) = component.disabled_reason(&self.cfg) {
                out.push(ComponentStatus {
                    name,
                    process: None,
                    health: Health::Unhealthy("disabled".into()),
                    disabled: Some(reason),
                });
                continue;
            }
            let process = component
                .process(&self.cfg)?
                .map(|spec| process::state(&self.pid_file(&name), &spec.comm()));
            let health = match &process {
                Some(ProcessState::NotRunning) => Health::Unhealthy("not running".into()),
                Some(ProcessState::Stale(pid)) => {
                    Health::Unhealthy(format!("stale pid file (pid {pid} is not running)"))
                }
                _ => component.health(&self.cfg).await,
            };
            out.push(ComponentStatus {
                name,
                process,
                health,
                disabled: None,
            });
        }
        Ok(out)
    }

    /// The variables tests and services use to reach this stack.
    pub fn env(&self) -> StackEnv {
        let enabled = |name: &str| {
            self.components
                .iter()
                .any(|c| c.name() == name && c.disabled_reason(&self.cfg).is_none())
        };
        StackEnv {
            pg_url: self.cfg.pg_admin_url(),
            kafka_bootstrap: self.cfg.kafka_bootstrap(),
            registry_url: enabled("schema-registry").then(|| self.cfg.registry_url()),
            registry_password: self.cfg.registry_password().ok(),
            admin_token: self.cfg.admin_token().ok(),
            lag_exporter_url: enabled(crate::LAG_EXPORTER_BIN).then(|| self.cfg.lag_exporter_url()),
            prometheus_url: enabled("prometheus").then(|| self.cfg.prometheus_url()),
        }
    }

    async fn write_env_file(&self) -> Result<(), StackError> {
        let path = self.cfg.env_file();
        let body: String = self
            .env()
            .vars()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        tokio::fs::write(&path, body)
            .await
            .map_err(StackError::io(format!("write {}", path.display())))?;
        // It holds the admin token, the registry password and the superuser URL: the
        // owner's eyes only.
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .await
            .map_err(StackError::io(format!("chmod {}", path.display())))
    }
}
