//! Kafka headers of the suite and W3C trace-context propagation through them.
//!
//! The trace context travels as `traceparent`/`tracestate` headers (the W3C convention for
//! Kafka, what OpenTelemetry's Kafka instrumentations use), so a consumer's span continues
//! the producer's trace and one trace covers every hop of a saga. `message_id`,
//! `message_type` and `correlation_id` are copied into headers so tools (the dead-letter
//! replay, dashboards) can route without decoding Avro.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const MESSAGE_ID: &str = "message_id";
pub const MESSAGE_TYPE: &str = "message_type";
pub const CORRELATION_ID: &str = "correlation_id";

/// Header map as stored in the outbox (JSON object of string values).
pub type HeaderMap = BTreeMap<String, String>;

struct MapInjector<'a>(&'a mut HeaderMap);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Write the current span's trace context into `headers`.
pub fn inject_current_trace(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MapInjector(headers));
    });
}

/// Build Kafka headers from a header map.
pub fn to_kafka_headers(headers: &HeaderMap) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |acc, (k, v)| {
            acc.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        },
    )
}

/// Read Kafka headers into a map (values that are not UTF-8 are skipped: every header the
/// suite writes is text).
pub fn from_kafka_headers(headers: Option<&BorrowedHeaders>) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(headers) = headers {
        for header in headers.iter() {
            if let Some(Ok(value)) = header.value.map(std::str::from_utf8) {
                map.insert(header.key.to_owned(), value.to_owned());
            }
        }
    }
    map
}

struct MapExtractor<'a>(&'a HeaderMap);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Make `span` a child of the trace context carried in `headers` (if any).
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&MapExtractor(headers))
    });
    // A message without trace headers simply starts a new trace.
    let _ = span.set_parent(context);
}

/// The trace id in a `traceparent` header value (`00-<trace id>-<span id>-<flags>`), for
/// log fields.
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(TRACEPARENT)
        .and_then(|tp| tp.split('-').nth(1))
        .filter(|id| id.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn trace_context_survives_a_round_trip_through_headers() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let producer_span = tracing::info_span!("produce");
            let mut headers = HeaderMap::new();
            producer_span.in_scope(|| inject_current_trace(&mut headers));
            let sent_trace = trace_id(&headers).expect("traceparent written").to_owned();

            let kafka = to_kafka_headers(&headers);
            assert_eq!(kafka.count(), headers.len());

            let consumer_span = tracing::info_span!("consume");
            set_parent_from_headers(&consumer_span, &headers);
            let mut onward = HeaderMap::new();
            consumer_span.in_scope(|| inject_current_trace(&mut onward));
            assert_eq!(trace_id(&onward), Some(sent_trace.as_str()));
        });
    }

    #[test]
    fn trace_id_rejects_malformed_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT.into(), "garbage".into());
        assert_eq!(trace_id(&headers), None);
    }
}
