//! A cargo-built HTTP binary of this workspace (the schema registry, the five services),
//! configured by `APP_`-prefixed environment variables and healthy when `GET /healthz`
//! answers 200.

use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;

use crate::catalog::SERVICE_DATABASES;
use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;

/// An HTTP service process found at `<target dir>/debug/<bin>`; skipped while not built.
///
/// ```
/// # use saga_stack::{HttpService, Stack, StackConfig};
/// let cfg = StackConfig::defaults();
/// let stack = Stack::new(cfg).push(
///     HttpService::new("order", "order-service", 18080)
///         .database("order_db")
///         .env("APP_ORDER__MAX_ITEMS", "50"),
/// );
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct HttpService {
    name: String,
    bin: String,
    port: u16,
    database: Option<String>,
    admin_token: bool,
    registry_auth: Option<RegistryAuth>,
    registry: bool,
    env: Vec<(String, String)>,
}

/// Which side of the registry's basic auth a service is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistryAuth {
    /// The registry itself: `APP_AUTH__USERNAME` / `APP_AUTH__PASSWORD`.
    Server,
    /// A service that registers schemas: `APP_REGISTRY__USERNAME` / `APP_REGISTRY__PASSWORD`.
    Client,
}

impl HttpService {
    pub fn new(name: impl Into<String>, bin: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            bin: bin.into(),
            port,
            database: None,
            admin_token: false,
            registry_auth: None,
            registry: true,
            env: Vec::new(),
        }
    }

    /// Connects the service to its own database, as its own role (`APP_DATABASE__URL`).
    /// Panics on a database missing from [`SERVICE_DATABASES`]: that is a programming error.
    pub fn database(mut self, database: &str) -> Self {
        assert!(
            SERVICE_DATABASES.iter().any(|d| d.database == database),
            "{database} is not in SERVICE_DATABASES"
        );
        self.database = Some(database.to_owned());
        self
    }

    /// Gives the service the stack's admin token ([`StackConfig::admin_token`]) as
    /// `APP_AUTH__ADMIN_TOKEN`.
    pub fn admin_token(mut self) -> Self {
        self.admin_token = true;
        self
    }

    /// Makes this service the schema registry, requiring the stack's registry password
    /// ([`StackConfig::registry_password`]) for writes.
    pub fn registry_server(mut self) -> Self {
        self.registry_auth = Some(RegistryAuth::Server);
        self
    }

    /// Gives the service the registry credential it registers its schemas with.
    pub fn registry_client(mut self) -> Self {
        self.registry_auth = Some(RegistryAuth::Client);
        self
    }

    /// No `APP_REGISTRY__URL`: for a binary without a `registry` section (the lag exporter),
    /// whose configuration refuses unknown keys.
    pub fn without_registry(mut self) -> Self {
        self.registry = false;
        self
    }

    /// The port it listens on.
    pub fn listen_port(&self) -> u16 {
        self.port
    }

    /// An extra environment variable (e.g. `APP_` settings specific to the service).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn health_url(&self, cfg: &StackConfig) -> String {
        format!("http://{}:{}/healthz", cfg.host, self.port)
    }
}

#[async_trait]
impl Component for HttpService {
    fn name(&self) -> &str {
        &self.name
    }

    fn disabled_reason(&self, cfg: &StackConfig) -> Option<String> {
        let bin = cfg.workspace_bin(&self.bin);
        (!bin.exists()).then(|| {
            format!(
                "{} not built (cargo build -p {} would create it)",
                bin.display(),
                self.bin
            )
        })
    }

    fn process(&self, cfg: &StackConfig) -> Result<Option<ProcessSpec>, StackError> {
        let mut spec = ProcessSpec::new(cfg.workspace_bin(&self.bin))
            .env("APP_HTTP__LISTEN", format!("{}:{}", cfg.host, self.port))
            .env("APP_KAFKA__BOOTSTRAP_SERVERS", cfg.kafka_bootstrap())
            .port(self.port);
        if self.registry {
            spec = spec.env("APP_REGISTRY__URL", cfg.registry_url());
        }
        if let Some(db) = &self.database {
            let db = SERVICE_DATABASES
                .iter()
                .find(|d| d.database == db)
                .ok_or_else(|| StackError::setup(&self.name, format!("unknown database {db}")))?;
            let password = cfg.db_password(db.role).map_err(StackError::io(format!(
                "read or create the password of {}",
                db.role
            )))?;
            spec = spec.env(
                "APP_DATABASE__URL",
                db.url(&cfg.host, cfg.pg_port, &password),
            );
        }
        if let Some(side) = self.registry_auth {
            let password = cfg
                .registry_password()
                .map_err(StackError::io("read or create the registry password"))?;
            let section = match side {
                RegistryAuth::Server => "AUTH",
                RegistryAuth::Client => "REGISTRY",
            };
            spec = spec
                .env(format!("APP_{section}__USERNAME"), crate::REGISTRY_USERNAME)
                .env(format!("APP_{section}__PASSWORD"), password);
        }
        if self.admin_token {
            let token = cfg
                .admin_token()
                .map_err(StackError::io("read or create the admin token"))?;
            spec = spec.env("APP_AUTH__ADMIN_TOKEN", token);
        }
        // Only the stack's settings: an `APP_` variable left in the caller's shell would
        // silently change a service (and the participants refuse unknown keys).
        spec.env_remove = std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| key.starts_with("APP_"))
            .collect();
        spec.env.extend(self.env.iter().cloned());
        spec.cwd = Some(cfg.data_dir.clone());
        spec.stop_signal = Signal::SIGTERM;
        Ok(Some(spec))
    }

    async fn health(&self, cfg: &StackConfig) -> Health {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
        {
            Ok(client) => client,
            Err(e) => return Health::Unhealthy(e.to_string()),
        };
        match client.get(self.health_url(cfg)).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => Health::Healthy,
            Ok(resp) => Health::Unhealthy(format!("GET /healthz: {}", resp.status())),
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }
}
