//! Helpers for the services' integration tests (feature `test-support`): a fresh migrated
//! database, the test stack's broker and registry on topics of one's own ([`Bus`]), an HTTP
//! server on a free port, and the problem+json assertion.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The admin token of services started by tests ([`admin_auth`]).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The admin check with [`ADMIN_TOKEN`], for tests that serve a service's router directly.
pub fn admin_auth() -> saga_service_kit::auth::AdminAuth {
    saga_service_kit::auth::AdminAuth::new(&saga_service_kit::auth::AuthConfig::with_admin_token(
        ADMIN_TOKEN,
    ))
    .expect("the test token is long enough")
}

/// A fresh database of the test stack with the outbox, inbox and `migrator` migrations run.
pub async fn fresh_pool(migrator: &'static Migrator) -> PgPool {
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    crate::migrate(&db.pool, migrator).await.unwrap();
    db.pool
}

/// Serves `router` on an ephemeral port until the returned token is cancelled (or the test's
/// runtime ends); returns its base URL.
pub async fn serve(router: axum::Router) -> (String, tokio_util::sync::CancellationToken) {
    let cfg = saga_service_kit::HttpConfig::default();
    let listener = saga_service_kit::http::bind(&cfg).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(saga_service_kit::http::serve(
        listener,
        router,
        token.clone(),
    ));
    (url, token)
}

/// Asserts an RFC 9457 response and returns its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        saga_service_kit::problem::CONTENT_TYPE
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

/// The real broker and registry of the test stack, on topics of our own (a unique prefix),
/// for wiring tests: send a contract message, wait for the reply.
pub struct Bus {
    pub kafka: saga_kafka::KafkaConfig,
    pub codec: saga_contracts::Codec,
    pub registry_url: String,
    producer: rdkafka::producer::FutureProducer,
}

/// A codec on the test stack's registry with every schema registered (no topics needed).
pub async fn registry_codec() -> saga_contracts::Codec {
    let stack = saga_testkit::TestStack::get().await;
    let url = stack
        .registry_url()
        .expect("this test needs the test stack's schema registry");
    let codec = saga_contracts::Codec::new(url);
    codec.register_all().await.unwrap();
    codec
}

impl Bus {
    pub async fn new() -> Bus {
        let stack = saga_testkit::TestStack::get().await;
        let registry_url = stack
            .registry_url()
            .expect("the wiring test needs the test stack's schema registry")
            .to_owned();
        let kafka = saga_kafka::KafkaConfig {
            bootstrap_servers: stack.kafka_bootstrap().to_owned(),
            topic_prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        };
        saga_kafka::admin::ensure_suite_topics(&kafka)
            .await
            .unwrap();
        let codec = saga_contracts::Codec::new(&registry_url);
        codec.register_all().await.unwrap();
        Bus {
            producer: kafka.producer().unwrap(),
            kafka,
            codec,
            registry_url,
        }
    }

    /// Publishes `msg` on its topic, keyed by its order id, as the orchestrator would.
    pub async fn send<M: saga_contracts::Message>(&self, msg: &M) {
        let payload = self.codec.encode(msg).await.unwrap();
        let key = msg.meta().order_id.to_string();
        let topic = self.kafka.topic(M::TOPIC);
        let record = rdkafka::producer::FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload);
        self.producer
            .send(record, std::time::Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Reads `T`'s topic from the beginning until `pick` returns something, within 30 s.
    pub async fn wait_for<T, R>(&self, mut pick: impl FnMut(&T) -> Option<R>) -> R
    where
        T: saga_contracts::TopicMessage,
    {
        use rdkafka::Message as _;
        use rdkafka::consumer::{Consumer as _, StreamConsumer};
        let group = format!("reader-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = self.kafka.consumer_config(&group).create().unwrap();
        consumer.subscribe(&[&self.kafka.topic(T::TOPIC)]).unwrap();
        let search = async {
            loop {
                let m = consumer.recv().await.unwrap();
                let decoded: T = self.codec.decode(m.payload().unwrap()).await.unwrap();
                if let Some(found) = pick(&decoded) {
                    return found;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), search)
            .await
            .unwrap_or_else(|_| panic!("no matching message on {} within 30 s", T::TOPIC))
    }

    /// The service's configuration for this bus and `database_url`.
    pub fn config<C: serde::de::DeserializeOwned>(&self, database_url: &str, group: &str) -> C {
        serde_json::from_value(serde_json::json!({
            "database": {"url": database_url},
            "kafka": {
                "bootstrap_servers": self.kafka.bootstrap_servers,
                "topic_prefix": self.kafka.topic_prefix,
            },
            "registry": {"url": self.registry_url},
            "consumer": {"group_id": group},
            "auth": {"admin_token": ADMIN_TOKEN},
        }))
        .unwrap()
    }
}

impl Bus {
    /// The `APP_*` environment that points a service binary at this bus and `database_url`
    /// (HTTP on a free port, the consumer group left to its default).
    pub fn binary_env(&self, database_url: &str) -> Vec<(String, String)> {
        [
            ("APP_DATABASE__URL", database_url),
            (
                "APP_KAFKA__BOOTSTRAP_SERVERS",
                &self.kafka.bootstrap_servers,
            ),
            ("APP_KAFKA__TOPIC_PREFIX", &self.kafka.topic_prefix),
            ("APP_REGISTRY__URL", &self.registry_url),
            ("APP_HTTP__LISTEN", "127.0.0.1:0"),
            ("APP_AUTH__ADMIN_TOKEN", ADMIN_TOKEN),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// A service binary started by a test; killed when dropped.
pub struct Binary {
    pub child: tokio::process::Child,
    /// Every line it printed until it logged that it started.
    pub output: Vec<String>,
}

/// Starts the service binary `exe` with exactly `env` as its `APP_*` environment and waits
/// (60 s at most) for its "started" log line. Panics with its output if it exits or times out.
pub async fn start_binary(exe: &str, env: &[(String, String)]) -> Binary {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("APP_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = merged_lines(stdout, stderr);
    let mut output = Vec::new();
    let started = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.recv().await {
            let done = line.contains("started");
            output.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    match started {
        Ok(true) => Binary { child, output },
        Ok(false) => panic!(
            "{exe} exited ({:?}) before starting:\n{}",
            child.wait().await,
            output.join("\n")
        ),
        Err(_) => panic!("{exe} did not start within 60 s:\n{}", output.join("\n")),
    }
}

/// Both output streams as one channel of lines (closed when both end).
fn merged_lines(
    mut stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    mut stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let _ = tx.send(line);
        }
    });
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = tx2.send(line);
        }
    });
    rx
}

/// The regression test of the group-id default, shared by every service: the binary `exe`
/// starts (and stays up) with one `APP_CONSUMER__*` variable and no group id. One such
/// variable used to replace the whole section with `ConsumerConfig::default()`, whose empty
/// group id the consumer refused.
pub async fn assert_starts_with_a_single_consumer_variable(exe: &str) {
    let bus = Bus::new().await;
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    let mut env = bus.binary_env(&db.url);
    env.push(("APP_CONSUMER__MEMBERSHIP".into(), "assign".into()));
    let mut binary = start_binary(exe, &env).await;
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "exited after starting: {:?}",
        binary.output
    );
    binary.child.kill().await.unwrap();
}
