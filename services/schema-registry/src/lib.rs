//! A Confluent Schema Registry-compatible HTTP service backed by Postgres (`registry_db`).
//! Avro only. See docs/schema-registry.md for the endpoints and the decisions behind
//! canonical forms, ids and compatibility.

pub mod api;
pub mod auth;
pub mod canonical;
pub mod compat;
pub mod error;
pub mod store;

use std::net::SocketAddr;

use saga_service_kit::http::{self as kit_http, db_check};
use saga_service_kit::{DatabaseConfig, DbError, HttpConfig, db};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use store::Store;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `APP_HTTP__LISTEN`, `APP_DATABASE__URL`, ... Unknown top-level keys are ignored: the stack
/// gives every service the same environment (broker, registry URL).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    /// `auth.username` / `auth.password`: the basic-auth credential of writes.
    #[serde(default)]
    pub auth: auth::AuthConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] auth::WeakPassword),
}

pub struct App {
    listener: TcpListener,
    store: Store,
    auth: auth::WriteAuth,
}

impl App {
    /// Connects to Postgres, applies migrations and binds the listener (port 0 allowed).
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let auth = auth::WriteAuth::new(&config.auth)?;
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, &[&MIGRATOR]).await?;
        let listener = kit_http::bind(&config.http).await?;
        Ok(Self {
            listener,
            store: Store::new(pool),
            auth,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let health =
            kit_http::health_router(vec![("database", db_check(self.store.pool().clone()))]);
        let router = health
            .merge(kit_http::metrics_router())
            .merge(api::router(self.store, &self.auth));
        kit_http::serve(self.listener, router, shutdown).await?;
        Ok(())
    }
}
