//! Service plumbing shared by every service of the suite: layered configuration, telemetry,
//! the shutdown token, the Postgres pool with merged migrations, the HTTP server with health
//! and metrics endpoints, the recent log lines by trace id, and RFC 9457 problem responses.
//!
//! A service's `main.rs` is expected to be: `config::load`, `telemetry::init`,
//! `shutdown::signal_token`, then its own `App::build(config).await?.run(token).await`.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod http;
pub mod logs;
pub mod problem;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, DatabaseConfig, HttpConfig, Secret};
pub use db::DbError;
pub use problem::{Problem, ProblemJson};
