//! The local stack supervisor: a small set of named [`Component`]s (PostgreSQL, the tansu
//! broker, the suite's topics, HTTP service processes) started in dependency order, each with
//! a pid file, a log file and a health check under one data directory.
//!
//! `cargo xtask up|down|status|logs` and the test harness (`saga-testkit`) both drive a
//! [`Stack`] from this crate, so the stack users run is the stack tests run.
//!
//! Adding a component: implement [`Component`] (or reuse [`HttpService`] for a cargo-built
//! binary that answers `GET /healthz`) and [`Stack::push`] it after the components it needs.

pub mod apt;
mod broker;
mod catalog;
mod component;
mod config;
mod error;
mod http_service;
mod postgres;
mod process;
mod prometheus;
pub mod proof;
mod services;
mod supervisor;
mod topics;

pub use broker::{
    Broker, SUITE_FETCH_WAIT_MS, TANSU_VERSION, ensure_tansu, kafka_client_config, tansu_build_id,
};
pub use catalog::{SERVICE_DATABASES, ServiceDb, TOPICS, TopicSpec};
pub use component::{Component, Health, ProcessSpec};
pub use config::{
    DEFAULT_LAG_EXPORTER_PORT, DEFAULT_PROMETHEUS_PORT, REGISTRY_USERNAME, StackConfig, free_port,
    workspace_root,
};
pub use error::StackError;
pub use http_service::HttpService;
pub use postgres::Postgres;
pub use process::{ProcessState, is_alive};
pub use prometheus::{Prometheus, ScrapeTarget};
pub use services::{
    CONSOLE_PORT, CONSUMER_GROUPS, ConsumerGroup, GroupHandler, LAG_EXPORTER_BIN, SAGA_SERVICES,
    SagaService, SuiteOptions, console_url, lag_exporter, suite_binaries, suite_consumer_groups,
    suite_prometheus,
};
pub use supervisor::{ComponentStatus, Stack, StackEnv, UpOutcome};
pub use topics::{Topics, create_topics};
