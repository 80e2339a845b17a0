//! Where the stack lives (data directory, binaries) and which ports it uses.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use crate::catalog::{TOPICS, TopicSpec};

/// Every port and path of a stack. [`StackConfig::defaults`] gives the documented defaults
/// (chosen so they do not collide with a system Postgres on 5432 or a Kafka on 9092);
/// [`StackConfig::private`] gives free ports for a throw-away stack in a temporary directory.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Holds every component's state, pid files (`run/`), logs (`logs/`) and `stack.env`.
    pub data_dir: PathBuf,
    /// Loopback address every component listens on.
    pub host: String,
    pub pg_port: u16,
    pub kafka_port: u16,
    pub registry_port: u16,
    /// The lag exporter (services/lag-exporter) of [`crate::Stack::suite`].
    pub lag_exporter_port: u16,
    /// The stack's own Prometheus of [`crate::Stack::suite`].
    pub prometheus_port: u16,
    /// HTTP port of each saga service by component name ([`crate::SAGA_SERVICES`]): the
    /// documented ports by default, free ones in a private stack so a test can run the
    /// whole suite beside a running `cargo xtask up`.
    pub service_ports: BTreeMap<String, u16>,
    /// The tansu binary; built into this path by `ensure_tansu` when absent.
    pub tansu_bin: PathBuf,
    /// Directory with `initdb` and `postgres`; searched for when `None`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Cargo target directory where HTTP service binaries are found (`<dir>/debug/<bin>`).
    pub target_dir: PathBuf,
    pub topics: Vec<TopicSpec>,
    /// How long `up` waits for one component to become healthy.
    pub start_timeout: std::time::Duration,
}

pub const DEFAULT_PG_PORT: u16 = 55432;
pub const DEFAULT_KAFKA_PORT: u16 = 19092;
pub const DEFAULT_REGISTRY_PORT: u16 = 18081;
pub const DEFAULT_LAG_EXPORTER_PORT: u16 = 18086;
/// Not Prometheus' usual 9090: a system Prometheus (Debian's package starts one) may hold it.
pub const DEFAULT_PROMETHEUS_PORT: u16 = 19090;

/// The user name of the schema registry's basic auth (its password is generated).
pub const REGISTRY_USERNAME: &str = "registry";

impl StackConfig {
    /// The documented defaults: data in `<workspace>/.stack`, fixed ports.
    pub fn defaults() -> Self {
        let root = workspace_root();
        Self {
            data_dir: root.join(".stack"),
            host: Ipv4Addr::LOCALHOST.to_string(),
            pg_port: DEFAULT_PG_PORT,
            kafka_port: DEFAULT_KAFKA_PORT,
            registry_port: DEFAULT_REGISTRY_PORT,
            lag_exporter_port: DEFAULT_LAG_EXPORTER_PORT,
            prometheus_port: DEFAULT_PROMETHEUS_PORT,
            service_ports: crate::SAGA_SERVICES
                .iter()
                .map(|s| (s.name.to_owned(), s.port))
                .collect(),
            tansu_bin: default_tansu_bin(),
            pg_bin_dir: None,
            target_dir: default_target_dir(&root),
            topics: TOPICS.to_vec(),
            start_timeout: std::time::Duration::from_secs(60),
        }
    }

    /// A stack in `data_dir` on free loopback ports, for tests and `xtask test`.
    pub fn private(data_dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let mut cfg = Self {
            data_dir: data_dir.into(),
            pg_port: free_port()?,
            kafka_port: free_port()?,
            registry_port: free_port()?,
            lag_exporter_port: free_port()?,
            prometheus_port: free_port()?,
            service_ports: crate::SAGA_SERVICES
                .iter()
                .map(|s| Ok((s.name.to_owned(), free_port()?)))
                .collect::<std::io::Result<_>>()?,
            ..Self::defaults()
        };
        // The operator console (not a saga service) gets its free port here too.
        cfg.service_ports
            .insert(crate::services::CONSOLE_BIN.to_owned(), free_port()?);
        Ok(cfg)
    }

    /// Superuser URL of the stack's PostgreSQL.
    pub fn pg_admin_url(&self) -> String {
        self.pg_url("postgres")
    }

    /// Superuser URL for one database.
    pub fn pg_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@{}:{}/{database}",
            self.superuser_password(),
            self.host,
            self.pg_port
        )
    }

    /// The superuser's password: generated into `secrets/pg-superuser-password` for a new
    /// cluster (initdb sets it). A cluster made before passwords were generated keeps its
    /// old development password `postgres`.
    pub fn superuser_password(&self) -> String {
        let path = self.secrets_dir().join("pg-superuser-password");
        let cluster_exists = self.data_dir.join("postgres").join("PG_VERSION").exists();
        if cluster_exists && !path.exists() {
            return crate::postgres::LEGACY_SUPERUSER_PASSWORD.to_owned();
        }
        read_or_create_secret(&path)
            .unwrap_or_else(|_| crate::postgres::LEGACY_SUPERUSER_PASSWORD.to_owned())
    }

    /// `<data dir>/secrets` (0700): every generated credential of the stack, one file each
    /// (0600), kept across `up`s.
    pub fn secrets_dir(&self) -> PathBuf {
        self.data_dir.join("secrets")
    }

    /// The password of a service's database role (`secrets/db-<role>`), set by `up` with
    /// `ALTER ROLE ... PASSWORD` and given to the service in its `APP_DATABASE__URL`.
    pub fn db_password(&self, role: &str) -> std::io::Result<String> {
        read_or_create_secret(&self.secrets_dir().join(format!("db-{role}")))
    }

    /// The schema registry's write password (`secrets/registry-password`): the registry
    /// gets it as `auth.password`, the services as `registry.password`.
    pub fn registry_password(&self) -> std::io::Result<String> {
        read_or_create_secret(&self.secrets_dir().join("registry-password"))
    }

    pub fn kafka_bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }

    pub fn registry_url(&self) -> String {
        format!("http://{}:{}", self.host, self.registry_port)
    }

    /// The HTTP port of a saga service (by component name) in this stack.
    pub fn service_port(&self, name: &str) -> Option<u16> {
        self.service_ports.get(name).copied()
    }

    pub fn lag_exporter_url(&self) -> String {
        format!("http://{}:{}", self.host, self.lag_exporter_port)
    }

    pub fn prometheus_url(&self) -> String {
        format!("http://{}:{}", self.host, self.prometheus_port)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn env_file(&self) -> PathBuf {
        self.data_dir.join("stack.env")
    }

    /// The bearer token of the services' admin routes (`auth.admin_token`): generated on
    /// first use into `<data dir>/secrets/admin-token`, readable by the owner only, and kept
    /// across `up`s so scripts holding it keep working.
    pub fn admin_token(&self) -> std::io::Result<String> {
        read_or_create_secret(&self.secrets_dir().join("admin-token"))
    }

    /// Path of a cargo-built binary of this workspace.
    pub fn workspace_bin(&self, name: &str) -> PathBuf {
        self.target_dir.join("debug").join(name)
    }
}

/// The secret in `path`, or a new random one (two v4 UUIDs: 244 random bits) written there
/// with mode 0600 in a 0700 directory.
pub(crate) fn read_or_create_secret(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())?;
    Ok(secret)
}

/// The workspace root: this crate lives at `<root>/crates/stack`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Outside the checkout so a fresh clone reuses the (slow to build) broker.
fn default_tansu_bin() -> PathBuf {
    std::env::var_os("SAGA_TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            home()
                .join(".cache/saga-suite")
                .join(crate::broker::tansu_build_id())
                .join("bin/tansu")
        })
}

fn default_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// A loopback port that was free a moment ago. Another process may take it before it is
/// used; components check their port again just before starting.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
