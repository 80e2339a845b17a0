//! Logging and trace context. Spans get OpenTelemetry trace ids (through the
//! tracing-opentelemetry layer) so the Kafka crate can inject them into message headers and
//! continue them on the consuming side with the globally installed W3C propagator.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: JSON lines when `APP_LOG_FORMAT=json`, compact text
/// otherwise, filtered by `RUST_LOG` (default `info`). Calling it again (several services in
/// one test process) is harmless: the first installation wins.
pub fn init(service_name: &'static str) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // No exporter: the provider exists so that spans carry real trace and span ids; an OTLP
    // exporter can be added here without touching the services.
    let provider = SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name)
                .build(),
        )
        .build();
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_tracer_provider(provider);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let json = std::env::var("APP_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    crate::logs::set_service(service_name);
    // The ring of recent lines (`GET /admin/logs`) sees what the filter lets through.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(crate::logs::layer());
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init()
    };
    if result.is_err() {
        tracing::debug!("tracing subscriber already installed");
    }
}
