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
pub mod pg;
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

/// As the services' binaries trace (an OpenTelemetry layer at INFO, so messages carry
/// `traceparent`, which is work the benchmark must include), with the log output on stderr
/// at `warn` unless `RUST_LOG` says otherwise. sqlx's slow-statement warnings are left out
/// by default: under contention they are lock waits, which the saga benchmark measures
/// and reports per saga instead.
pub fn init_tracing_with_spans() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("saga-bench");
    opentelemetry::global::set_tracer_provider(provider);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .compact()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .try_init();
}
