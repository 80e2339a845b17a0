//! The tansu broker: a Kafka-protocol broker with durable SQLite storage in the stack's data
//! directory, built once into a cache directory outside the checkout.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;

/// Pinned: the storage behaviour in STACK-FACTS was measured on this version.
pub const TANSU_VERSION: &str = "0.6.0";
const NAME: &str = "broker";
/// The broker's SQLite file, relative to its working directory `<data dir>/broker`.
const DB_FILE: &str = "tansu.db";

/// The tansu broker component.
pub struct Broker;

/// Builds tansu into the cache directory that holds `bin` (`<root>/bin/tansu`) unless it is
/// already there. A file lock serialises concurrent first runs (e.g. two test binaries).
pub fn ensure_tansu(bin: &Path) -> Result<(), StackError> {
    if bin.exists() {
        return Ok(());
    }
    let root = bin
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| StackError::setup(NAME, format!("bad tansu path {}", bin.display())))?;
    std::fs::create_dir_all(root).map_err(StackError::io(format!("create {}", root.display())))?;
    let lock_path = root.join(".install.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(StackError::io(format!("create {}", lock_path.display())))?;
    lock.lock().map_err(StackError::io("lock tansu install"))?;
    if bin.exists() {
        return Ok(());
    }
    eprintln!(
        "broker: building tansu {TANSU_VERSION} into {} (one time; ~9 min on 2 cores)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", "tansu", "--version", TANSU_VERSION])
        // libsql: durable sqlite storage; dynostore: memory storage. The default features
        // have no storage engine at all.
        .args(["--features", "libsql,dynostore", "--root"])
        .arg(root)
        // Our own CARGO_TARGET_DIR would make the install fight the workspace build lock.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(StackError::io("run cargo install tansu"))?;
    if !status.success() || !bin.exists() {
        return Err(StackError::setup(
            NAME,
            format!("cargo install tansu {TANSU_VERSION} failed ({status})"),
        ));
    }
    Ok(())
}

/// Client settings for this broker. tansu's fetch long-poll does not wake on new data, so a
/// consumer waits the full `fetch.wait.max.ms` on an empty partition: keep it small.
pub fn kafka_client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("fetch.wait.max.ms", "10")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3");
    cfg
}

pub(crate) fn fetch_metadata(
    bootstrap: &str,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, String> {
    let consumer: BaseConsumer = kafka_client_config(bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| e.to_string())
}

#[async_trait]
impl Component for Broker {
    fn name(&self) -> &str {
        NAME
    }

    async fn prepare(&self, cfg: &StackConfig) -> Result<(), StackError> {
        std::fs::create_dir_all(cfg.data_dir.join("broker"))
            .map_err(StackError::io("create broker dir"))?;
        let bin = cfg.tansu_bin.clone();
        tokio::task::spawn_blocking(move || ensure_tansu(&bin))
            .await
            .map_err(|e| StackError::setup(NAME, format!("install task: {e}")))?
    }

    fn process(&self, cfg: &StackConfig) -> Result<Option<ProcessSpec>, StackError> {
        let url = format!("tcp://{}:{}", cfg.host, cfg.kafka_port);
        let mut spec = ProcessSpec::new(&cfg.tansu_bin)
            .args(["broker", "--cluster-id", "saga-suite"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Resolved relative to the working directory (see STACK-FACTS).
            .args(["--storage-engine", &format!("sqlite://{DB_FILE}")])
            .port(cfg.kafka_port);
        spec.cwd = Some(cfg.data_dir.join("broker"));
        spec.env_remove = [
            "CLUSTER_ID",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "STORAGE_ENGINE",
            "SCHEMA_REGISTRY",
        ]
        .map(String::from)
        .to_vec();
        spec.stop_signal = Signal::SIGTERM;
        Ok(Some(spec))
    }

    /// tansu 0.6.0's SQLite schema has no index on `header (topition, offset_id)`, and it
    /// fetches each record's headers with a query joined on exactly that: every fetched
    /// record scans the whole header table. Our messages carry ~4 headers, so a broker slows
    /// down as it fills (measured: 10.6 ms per fetched record at 160k header rows, i.e. under
    /// 100 records/s, with tansu pegged at a full core; 0.006 ms with the index). Adding the
    /// index once the broker created its tables is safe while it runs (SQLite locking) and
    /// idempotent.
    async fn after_start(&self, cfg: &StackConfig) -> Result<(), StackError> {
        let db = cfg.data_dir.join("broker").join(DB_FILE);
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&db)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.execute_batch(
                "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id)",
            )
        })
        .await
        .map_err(|e| StackError::setup(NAME, format!("index task: {e}")))?
        .map_err(|e| StackError::setup(NAME, format!("index the broker's header table: {e}")))
    }

    async fn health(&self, cfg: &StackConfig) -> Health {
        let bootstrap = cfg.kafka_bootstrap();
        let result = tokio::task::spawn_blocking(move || {
            fetch_metadata(&bootstrap, Duration::from_secs(2)).map(|md| md.brokers().len())
        })
        .await;
        match result {
            Ok(Ok(n)) if n > 0 => Health::Healthy,
            Ok(Ok(_)) => Health::Unhealthy("metadata lists no broker".into()),
            Ok(Err(e)) => Health::Unhealthy(e),
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }
}
