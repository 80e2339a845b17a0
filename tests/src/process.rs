//! A service as a child process of its binary, for the crash tests: only a real process can
//! be killed with SIGKILL mid-transaction, with its sockets, pool and librdkafka state gone.
//!
//! The binary is `<target>/debug/<name>-service`, next to this test executable's `deps/`
//! directory. `cargo test --workspace` (and `cargo xtask test`) build every binary;
//! `cargo test -p saga-e2e` alone does not, so build them first (see docs/testing.md).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use saga_testkit::wait_until;
use tokio::process::{Child, Command};

use crate::{Membership, Service, Suite};

pub(crate) struct ChildService {
    pub url: String,
    child: Child,
    log: PathBuf,
}

/// `<target>/debug/`: a test executable lives in `<target>/debug/deps/`, a binary of this
/// crate (the chaos soak) in `<target>/debug/` itself.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("the executable is in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("<target>/debug/deps").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A port nobody listens on now. The child binds it a moment later; a collision in between
/// would fail the start loudly (the health check never passes), not silently.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl ChildService {
    pub async fn spawn(suite: &Suite, service: Service) -> ChildService {
        Self::spawn_with(suite, service, &[]).await
    }

    /// [`ChildService::spawn`] with more environment, set last (e.g. a standby instance of
    /// the chaos soak: `APP_COMPONENTS__CONSUMER=false`).
    pub async fn spawn_with(suite: &Suite, service: Service, env: &[(&str, &str)]) -> ChildService {
        let bin = bin_dir().join(service.bin());
        assert!(
            bin.exists(),
            "{} is not built: run `cargo build -p {}` (or `cargo test --workspace`, which builds \
             every binary) before the crash tests",
            bin.display(),
            service.bin()
        );
        std::fs::create_dir_all(&suite.log_dir).expect("log directory");
        let log = suite.log_dir.join(format!(
            "{}-{}.log",
            service.bin(),
            uuid::Uuid::new_v4().simple()
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let netns = suite.options.netns.get(&service);
        // In a namespace of its own the service listens on the namespace's address (its
        // loopback is not the test's); the port is free there whatever it is here.
        let listen = format!(
            "{}:{port}",
            netns.map_or(std::net::Ipv4Addr::LOCALHOST, |ns| ns.address)
        );
        let url = format!("http://{listen}");
        let opts = &suite.options;
        let membership = match suite.membership(service) {
            Membership::Group => "group",
            Membership::Assign => "assign",
        };

        let mut cmd = match netns {
            Some(ns) => {
                // `ip netns exec` enters the namespace and execs the binary: same pid.
                let mut cmd = Command::new(&ns.ip);
                cmd.args(["netns", "exec", &ns.name]).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        // Only what we set: an APP_ variable of the test's environment would change the
        // service (and the participants refuse unknown keys).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("APP_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("APP_HTTP__LISTEN", &listen)
            .env("APP_DATABASE__URL", suite.service_database_url(service))
            .env(
                "APP_DATABASE__MAX_CONNECTIONS",
                opts.db_max_connections.to_string(),
            )
            .env(
                "APP_KAFKA__BOOTSTRAP_SERVERS",
                &suite.kafka.bootstrap_servers,
            )
            .env("APP_KAFKA__TOPIC_PREFIX", &suite.prefix)
            .env(
                "APP_KAFKA__FETCH_WAIT_MAX_MS",
                opts.fetch_wait_max_ms.to_string(),
            )
            .env("APP_KAFKA__STATISTICS_INTERVAL_MS", "0")
            .env("APP_REGISTRY__URL", &suite.registry_url)
            .env("APP_AUTH__ADMIN_TOKEN", crate::ADMIN_TOKEN)
            .env("APP_CONSUMER__GROUP_ID", suite.group_id(service))
            .env("APP_CONSUMER__MEMBERSHIP", membership)
            .env("APP_CONSUMER__BACKOFF_INITIAL_MS", "20")
            .env("APP_CONSUMER__BACKOFF_MAX_MS", "1000")
            .env(
                "APP_RELAY__POLL_INTERVAL_MS",
                opts.relay_poll_ms.to_string(),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            // A test that panics must not leave its services running.
            .kill_on_drop(true);
        match service {
            Service::Orchestrator => {
                cmd.env(
                    "APP_SAGA__RETRY_TIMEOUT_MS",
                    opts.retry_timeout_ms.to_string(),
                )
                .env(
                    "APP_SAGA__RETRY_MAX_BACKOFF_MS",
                    (opts.retry_timeout_ms * 4).to_string(),
                )
                .env(
                    "APP_SAGA__RETRY_INTERVAL_MS",
                    opts.retry_interval_ms.to_string(),
                );
                for (step, ms) in &opts.step_deadlines_ms {
                    cmd.env(
                        format!("APP_SAGA__STEP_DEADLINES_MS__{}", step.to_uppercase()),
                        ms.to_string(),
                    );
                }
            }
            Service::Order => {
                cmd.env("APP_ORDER__PROJECTOR_POLL_MS", "200");
                if let Some(after) = &opts.order_pending_stale_after {
                    cmd.env("APP_ORDER__PENDING_STALE_AFTER", after);
                }
            }
            Service::Shipping => {
                if let Some(countries) = &opts.served_countries {
                    cmd.env(
                        "APP_SHIPPING__SERVED_COUNTRIES",
                        serde_json::to_string(countries).expect("json"),
                    );
                }
            }
            Service::Inventory | Service::Payment => {}
        }
        for (target, key, value) in &opts.extra_env {
            if *target == service {
                cmd.env(key, value);
            }
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut this = ChildService { url, child, log };
        this.wait_healthy(suite).await;
        this
    }

    async fn wait_healthy(&mut self, suite: &Suite) {
        let health = format!("{}/healthz", self.url);
        let http = suite.http();
        let mut exited = None;
        let healthy = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
            }
            let done = exited.is_some();
            let health = health.clone();
            async move {
                done || http
                    .get(&health)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if let Some(status) = exited {
            panic!(
                "{} exited at start ({status}):\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        if healthy.is_err() {
            panic!(
                "{} not healthy within 60 s:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }

    /// The last lines of the child's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has ended (and is reaped).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (what `Child::start_kill` sends on Unix) and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
