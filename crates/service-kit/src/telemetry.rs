//! Logging and trace context. Spans get OpenTelemetry trace ids (through the
//! tracing-opentelemetry layer) so the Kafka crate can inject them into message headers and
//! continue them on the consuming side with the globally installed W3C propagator.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set (a base URL such as `http://jaeger:4318`), spans
//! are also exported over OTLP (HTTP/protobuf, batched) to a collector or Jaeger; without
//! it nothing leaves the process.

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

    // Without an endpoint the provider exists only so that spans carry real trace and span
    // ids (the Kafka headers); with one, a batch exporter also sends them out.
    let endpoint = otlp_endpoint(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok());
    let exporter = match otlp_exporter(endpoint.as_deref()) {
        Ok(exporter) => exporter,
        Err(e) => {
            // Telemetry must not stop a service: log (to stderr, no subscriber yet) and go on.
            eprintln!("OTLP exporter not built, spans stay local: {e}");
            None
        }
    };
    let provider = tracer_provider(service_name, exporter);
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
    } else if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP");
    }
}

/// The OTLP base URL from the value of `OTEL_EXPORTER_OTLP_ENDPOINT`: `None` when unset or
/// blank (docker-compose passes an empty value when Jaeger is not wanted).
fn otlp_endpoint(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty())
}

/// An OTLP span exporter for `endpoint` (HTTP/protobuf at `<endpoint>/v1/traces`, the
/// OpenTelemetry convention for the base-URL variable), or `None` without an endpoint.
fn otlp_exporter(
    endpoint: Option<&str>,
) -> Result<Option<opentelemetry_otlp::SpanExporter>, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .map(Some)
}

fn tracer_provider(
    service_name: &'static str,
    exporter: Option<opentelemetry_otlp::SpanExporter>,
) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name)
            .build(),
    );
    match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter).build(),
        None => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_otlp_exporter_exists_only_with_an_endpoint() {
        assert_eq!(otlp_endpoint(None), None);
        assert_eq!(otlp_endpoint(Some("  ".into())), None);
        assert_eq!(
            otlp_endpoint(Some("http://jaeger:4318/".into())).as_deref(),
            Some("http://jaeger:4318")
        );
        assert!(otlp_exporter(None).unwrap().is_none());
        let exporter = otlp_exporter(Some("http://127.0.0.1:4318")).unwrap();
        assert!(exporter.is_some());
        // A provider with the exporter builds and shuts down without a collector listening.
        let provider = tracer_provider("test", exporter);
        let _ = provider.shutdown();
    }
}
