//! Benchmarks of the suite: commands that print figures, never timed tests.
//!
//! - `bench-messaging`: outbox relay -> tansu -> consumer runtime (commit-to-consumer
//!   latency, relay throughput), with a plain rdkafka producer -> consumer hop measured in
//!   the same run beside it, so the pipeline's cost reads against the broker's own.
//! - `bench-saga`: orders placed over HTTP through the whole suite.
//!
//! Both run against the stack named by `SAGA_PG_URL` / `SAGA_KAFKA_BOOTSTRAP` /
//! `SAGA_REGISTRY_URL` (`cargo xtask bench` provides a private one), and report the CPU each
//! process of the stack used, because on a small shared machine "where does the time go" is
//! the question every figure raises.

pub mod cpu;
pub mod hop;
pub mod stats;

/// `tracing` to stderr at `warn` unless `RUST_LOG` says otherwise: the figures go to stdout.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
