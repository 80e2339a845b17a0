//! The tansu broker: a Kafka-protocol broker with durable SQLite storage in the stack's data
//! directory, built once into a cache directory outside the checkout.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sha2::{Digest, Sha256};

use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;

/// Pinned: the storage behaviour in STACK-FACTS was measured on this version.
pub const TANSU_VERSION: &str = "0.6.0";
/// Applied to tansu-storage before the build: a fetch answers as soon as it has data and a
/// waiting fetch wakes on a produce to its partitions, and the SQLite storage indexes its
/// header table and keeps its hot statements prepared. What and why: `crates/stack/tansu/README.md`.
const STORAGE_PATCH: &str = include_str!("../tansu/tansu-storage.patch");
/// Appended to tansu's manifest before the build: the crates the broker links but the stack
/// never runs (schema validators, object stores, TLS crypto, the cli's client tools) are built
/// at `opt-level = 0`, which cuts the one-time build; the broker's own path keeps
/// `opt-level = 3`. What and why: `crates/stack/tansu/README.md`.
const RELEASE_PROFILE: &str = include_str!("../tansu/release-profile.toml");
/// The stack uses SQLite storage only, so the object-store engines are not built.
const FEATURES: &str = "libsql";
const NAME: &str = "broker";
/// The broker's SQLite file, relative to its working directory `<data dir>/broker`.
const DB_FILE: &str = "tansu.db";

/// The tansu broker component.
pub struct Broker;

/// Names one build of the broker: the version, the features, the patch and the release
/// profile. A changed recipe gets a directory of its own, so a cache built from an older one
/// is never reused.
pub fn tansu_build_id() -> String {
    let mut hash = Sha256::new();
    for part in [TANSU_VERSION, FEATURES, STORAGE_PATCH, RELEASE_PROFILE] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let short: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("tansu-{TANSU_VERSION}-{short}")
}

/// Builds the patched tansu into the cache directory that holds `bin` (`<root>/bin/tansu`)
/// unless it is already there. A file lock serialises concurrent first runs (e.g. two test
/// binaries).
///
/// The crate sources come from crates.io (the registry's download address), the patch and the
/// release profile from this repository; tansu-storage is swapped in with `[patch.crates-io]`
/// and the broker is built against tansu's own published `Cargo.lock`.
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
        "broker: building tansu {TANSU_VERSION} (patched, features {FEATURES}) into {} \
         (one time; ~6 min on 2 idle cores, longer on a busy machine)",
        root.display()
    );
    let src = root.join("src");
    // A half-unpacked tree from an interrupted run is redone from scratch.
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(StackError::io(format!("create {}", src.display())))?;
    let tansu = unpack_crate(&src, "tansu")?;
    let storage = unpack_crate(&src, "tansu-storage")?;

    let patch = root.join("tansu-storage.patch");
    std::fs::write(&patch, STORAGE_PATCH).map_err(StackError::io("write tansu patch"))?;
    run(Command::new("git")
        .args(["apply", "-p1"])
        .arg(&patch)
        .current_dir(&storage)
        // Never let git find an enclosing repository: the paths are the crate's own.
        .env("GIT_CEILING_DIRECTORIES", &src))?;

    let manifest = tansu.join("Cargo.toml");
    let mut toml =
        std::fs::read_to_string(&manifest).map_err(StackError::io("read tansu manifest"))?;
    toml.push_str("\n[patch.crates-io]\ntansu-storage = { path = \"../tansu-storage\" }\n");
    toml.push_str(RELEASE_PROFILE);
    std::fs::write(&manifest, toml).map_err(StackError::io("write tansu manifest"))?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = root.join("target");
    run(Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "tansu",
            "--features",
            FEATURES,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        // Our own CARGO_TARGET_DIR would make the build fight the workspace build lock.
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        // Progress on a pipe (CI, `xtask up` under a log) needs an explicit width: cargo
        // refuses "always" without one and the build fails before it starts.
        .env("CARGO_TERM_PROGRESS_WHEN", "always")
        .env("CARGO_TERM_PROGRESS_WIDTH", "100"))?;
    let built = target.join("release/tansu");
    std::fs::create_dir_all(bin.parent().unwrap_or(root))
        .map_err(StackError::io("create tansu bin dir"))?;
    std::fs::copy(&built, bin).map_err(StackError::io(format!("install {}", bin.display())))?;
    // The intermediate build is ~2 GB; keep only the binary.
    let _ = std::fs::remove_dir_all(&target);
    eprintln!("broker: tansu built at {}", bin.display());
    Ok(())
}

/// Downloads `<name>-<TANSU_VERSION>.crate` from crates.io and unpacks it into `dir`.
fn unpack_crate(dir: &Path, name: &str) -> Result<std::path::PathBuf, StackError> {
    if !crate::apt::on_path("curl") {
        crate::apt::install(NAME, &["curl", "ca-certificates"])?;
    }
    let file = dir.join(format!("{name}-{TANSU_VERSION}.crate"));
    let url = format!("https://static.crates.io/crates/{name}/{TANSU_VERSION}/download");
    eprintln!("broker: downloading {url}");
    run(Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "3",
            "-o",
        ])
        .arg(&file)
        .arg(&url))?;
    run(Command::new("tar").arg("xzf").arg(&file).arg("-C").arg(dir))?;
    let unpacked = dir.join(format!("{name}-{TANSU_VERSION}"));
    let renamed = dir.join(name);
    std::fs::rename(&unpacked, &renamed)
        .map_err(StackError::io(format!("rename {}", unpacked.display())))?;
    Ok(renamed)
}

fn run(cmd: &mut Command) -> Result<(), StackError> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(StackError::io(format!("run {shown}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::setup(
            NAME,
            format!("{shown} failed ({status})"),
        ))
    }
}

/// `fetch.wait.max.ms` of the suite's consumers on this broker. The patched broker answers a
/// fetch as soon as data arrives (crates/stack/tansu/README.md), so a long wait costs no
/// latency and keeps idle consumers from polling the broker busy (the idle suite's broker:
/// 4.0% of a core at 1 s against 7.3% at 500 ms, 30 s measured).
pub const SUITE_FETCH_WAIT_MS: u32 = 1000;

/// Client settings for this broker.
pub fn kafka_client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("fetch.wait.max.ms", SUITE_FETCH_WAIT_MS.to_string())
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
