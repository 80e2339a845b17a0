//! Test harness: a running PostgreSQL + broker (+ schema registry when built) for tests.
//!
//! [`TestStack::get`] reuses the stack named by `SAGA_PG_URL` / `SAGA_KAFKA_BOOTSTRAP` /
//! `SAGA_REGISTRY_URL` (what `cargo xtask test` and `.stack/stack.env` provide), or else
//! starts a private one with `saga-stack` (the code behind `cargo xtask up`) in a temporary
//! directory on free ports. A private stack is torn down by a watchdog process when the test
//! process exits, because Rust test binaries never run static destructors.

mod private;
mod wait;

use std::time::Duration;

use rdkafka::ClientConfig;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

pub use private::PrivateStack;
pub use wait::{TimedOut, wait_until};

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("start private stack: {0}")]
    Stack(#[from] saga_stack::StackError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("not built (cargo build -p each): {0}")]
    NotBuilt(String),
}

/// The stack every test of one test process shares.
#[derive(Debug)]
pub struct TestStack {
    pg_admin_url: String,
    kafka_bootstrap: String,
    registry_url: Option<String>,
    /// Kept alive for the process lifetime when the stack is our own.
    _private: Option<PrivateStack>,
}

static STACK: OnceCell<TestStack> = OnceCell::const_new();

impl TestStack {
    /// The shared stack, started on first use. Panics when it cannot be started: no test
    /// that needs it can say anything useful then.
    pub async fn get() -> &'static TestStack {
        STACK
            .get_or_init(|| async {
                match Self::from_env() {
                    Some(stack) => stack,
                    None => Self::start_private()
                        .await
                        .unwrap_or_else(|e| panic!("saga-testkit: {e}")),
                }
            })
            .await
    }

    fn from_env() -> Option<TestStack> {
        let pg = std::env::var("SAGA_PG_URL").ok()?;
        let kafka = std::env::var("SAGA_KAFKA_BOOTSTRAP").ok()?;
        Some(TestStack {
            pg_admin_url: pg,
            kafka_bootstrap: kafka,
            registry_url: std::env::var("SAGA_REGISTRY_URL").ok().map(|url| {
                let user = std::env::var("SAGA_REGISTRY_USER")
                    .unwrap_or_else(|_| saga_stack::REGISTRY_USERNAME.to_owned());
                authenticated(&url, &user, std::env::var("SAGA_REGISTRY_PASSWORD").ok())
            }),
            _private: None,
        })
    }

    async fn start_private() -> Result<TestStack, TestkitError> {
        let private = PrivateStack::start().await?;
        let env = private.stack().env();
        Ok(TestStack {
            registry_url: registry_of(&env),
            pg_admin_url: env.pg_url,
            kafka_bootstrap: env.kafka_bootstrap,
            _private: Some(private),
        })
    }

    /// A stack of the caller's own (e.g. the chaos soak's, whose broker and database it
    /// restarts), to hand to code that takes a `&TestStack`. Not the process-wide one.
    pub fn from_private(private: PrivateStack) -> TestStack {
        let env = private.stack().env();
        TestStack {
            registry_url: registry_of(&env),
            pg_admin_url: env.pg_url,
            kafka_bootstrap: env.kafka_bootstrap,
            _private: Some(private),
        }
    }

    /// The stack's supervisor when this stack is our own (its components can be stopped and
    /// started again); `None` for a stack named by the environment.
    pub fn private(&self) -> Option<&PrivateStack> {
        self._private.as_ref()
    }

    /// Superuser URL of the `postgres` database.
    pub fn pg_admin_url(&self) -> &str {
        &self.pg_admin_url
    }

    pub fn kafka_bootstrap(&self) -> &str {
        &self.kafka_bootstrap
    }

    /// The schema registry, when the stack runs one, with its write credential as user info
    /// (`http://registry:<password>@host:port`): reqwest, curl and the codec send it as basic
    /// auth, so tests may register schemas through it.
    pub fn registry_url(&self) -> Option<&str> {
        self.registry_url.as_deref()
    }

    /// URL of `database` on the stack's server, as the superuser.
    pub fn pg_url_for(&self, database: &str) -> String {
        let base = self
            .pg_admin_url
            .rsplit_once('/')
            .map_or(self.pg_admin_url.as_str(), |(base, _)| base);
        format!("{base}/{database}")
    }

    /// A new, empty database with a unique name. It is left in place after the test (the
    /// private or `xtask test` stack is thrown away as a whole); call [`TestDb::drop_db`] to
    /// remove it earlier.
    pub async fn fresh_database(&self) -> TestDb {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&self.pg_admin_url)
            .await
            .expect("connect to the test stack's PostgreSQL as superuser");
        // The name is generated above, never input.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let url = self.pg_url_for(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .expect("connect to the fresh test database");
        TestDb {
            name,
            url,
            pool,
            admin_url: self.pg_admin_url.clone(),
        }
    }

    /// Creates `name` with `partitions` partitions; an existing topic is left as it is.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        saga_stack::create_topics(&self.kafka_bootstrap, &[(name, partitions)])
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    }

    /// A new topic (4 partitions) named `<prefix>-<uuid>`.
    pub async fn unique_topic(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.create_topic(&name, 4).await;
        name
    }

    /// rdkafka settings for this broker and consumer group `group`.
    pub fn kafka_client_config(&self, group: &str) -> ClientConfig {
        let mut cfg = saga_stack::kafka_client_config(&self.kafka_bootstrap);
        cfg.set("group.id", group);
        cfg
    }
}

/// The registry URL of a stack's environment with its credential as user info.
fn registry_of(env: &saga_stack::StackEnv) -> Option<String> {
    let url = env.registry_url.as_deref()?;
    Some(authenticated(
        url,
        saga_stack::REGISTRY_USERNAME,
        env.registry_password.clone(),
    ))
}

/// `http://host:port` -> `http://user:password@host:port` (the generated passwords are hex).
fn authenticated(url: &str, user: &str, password: Option<String>) -> String {
    match (password, url.split_once("://")) {
        (Some(password), Some((scheme, rest))) if !rest.contains('@') => {
            format!("{scheme}://{user}:{password}@{rest}")
        }
        _ => url.to_owned(),
    }
}

/// A database of one test.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl TestDb {
    /// Closes the pool and drops the database.
    pub async fn drop_db(self) -> Result<(), sqlx::Error> {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}
