//! The last log lines of this process, kept in memory and searchable by trace id: one saga's
//! lines from every service, visible in the operator console without a tracing backend.
//!
//! [`layer`] is installed beside the formatter by [`crate::telemetry::init`]; it sees what
//! the log filter lets through and keeps the newest [`CAPACITY`] lines. Each line carries the
//! OpenTelemetry trace id of the span it was logged in (one trace per saga: the Kafka headers
//! continue it across services) and the `order_id` field of its spans, if any.
//! [`admin_router`] serves them as `GET /admin/logs?trace_id=&order_id=&limit=`, behind the
//! admin credential: log lines name customers and amounts.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use opentelemetry::trace::{TraceContextExt as _, TraceId};
use serde::{Deserialize, Serialize};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per process; older ones are dropped first. A few MB at most.
pub const CAPACITY: usize = 20_000;
/// Lines one request returns at most (the newest matching ones).
pub const MAX_LIMIT: usize = 2_000;

/// One kept log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub at: chrono::DateTime<chrono::Utc>,
    pub level: String,
    pub target: String,
    /// 32 hex digits, as in `traceparent`; absent outside any traced span.
    pub trace_id: Option<String>,
    pub order_id: Option<String>,
    /// `span{fields}:span{fields}: message field=value ...`, like the compact formatter.
    pub text: String,
}

/// The answer of `GET /admin/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    /// The service name given to [`crate::telemetry::init`].
    pub service: String,
    pub lines: Vec<LogLine>,
}

static RING: OnceLock<Mutex<VecDeque<LogLine>>> = OnceLock::new();
static SERVICE: OnceLock<&'static str> = OnceLock::new();

fn ring() -> &'static Mutex<VecDeque<LogLine>> {
    RING.get_or_init(|| Mutex::new(VecDeque::with_capacity(1024)))
}

pub(crate) fn set_service(name: &'static str) {
    let _ = SERVICE.set(name);
}

fn push(line: LogLine) {
    let mut ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() >= CAPACITY {
        ring.pop_front();
    }
    ring.push_back(line);
}

/// The newest `limit` kept lines matching every given filter, oldest first.
pub fn search(trace_id: Option<&str>, order_id: Option<&str>, limit: usize) -> Vec<LogLine> {
    let ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<LogLine> = ring
        .iter()
        .rev()
        .filter(|l| trace_id.is_none_or(|t| l.trace_id.as_deref() == Some(t)))
        .filter(|l| order_id.is_none_or(|o| l.order_id.as_deref() == Some(o)))
        .take(limit)
        .cloned()
        .collect();
    out.reverse();
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    trace_id: Option<String>,
    order_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/logs`: wrap it with [`crate::auth::AdminAuth::protect`].
pub fn admin_router() -> Router {
    Router::new().route(
        "/admin/logs",
        get(|Query(q): Query<LogQuery>| async move {
            let limit = q.limit.unwrap_or(500).clamp(1, MAX_LIMIT);
            let lines = search(q.trace_id.as_deref(), q.order_id.as_deref(), limit);
            axum::Json(LogPage {
                service: SERVICE.get().copied().unwrap_or("unknown").to_owned(),
                lines,
            })
        }),
    )
}

/// The layer that fills the ring.
pub fn layer() -> RingLayer {
    RingLayer {
        dispatch: OnceLock::new(),
    }
}

pub struct RingLayer {
    /// The subscriber this layer is part of, to ask the OpenTelemetry layer for a span's
    /// trace id: inside `on_event` the thread's default dispatcher is not reachable (tracing
    /// guards against re-entrance), so it is kept from registration.
    dispatch: OnceLock<WeakDispatch>,
}

/// A span's fields as text, and its `order_id`, kept in the span's extensions.
struct SpanFields {
    text: String,
    order_id: Option<String>,
}

#[derive(Default)]
struct FieldText {
    text: String,
    message: String,
    order_id: Option<String>,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "order_id" {
            self.order_id = Some(value.to_owned());
        }
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        let shown = format!("{value:?}");
        if field.name() == "order_id" {
            self.order_id = Some(shown.trim_matches('"').to_owned());
        }
        let _ = write!(self.text, " {}={shown}", field.name());
    }
}

impl<S> tracing_subscriber::Layer<S> for RingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields {
                text: fields.text,
                order_id: fields.order_id,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(kept) = ext.get_mut::<SpanFields>() {
                kept.text.push_str(&fields.text);
                if fields.order_id.is_some() {
                    kept.order_id = fields.order_id;
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let mut text = String::new();
        let mut order_id = fields.order_id.take();
        let mut leaf = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let kept = ext.get::<SpanFields>();
                let _ = write!(
                    text,
                    "{}{{{}}}:",
                    span.name(),
                    kept.map_or("", |k| k.text.trim_start())
                );
                if order_id.is_none() {
                    order_id = kept.and_then(|k| k.order_id.clone());
                }
                leaf = Some(span.id());
            }
        }
        // The trace id lives in the OpenTelemetry layer's data; read it without holding any
        // span extensions (the call locks them).
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let trace_id = leaf.zip(dispatch).and_then(|(id, dispatch)| {
            tracing_opentelemetry::get_otel_context(&id, &dispatch)
                .map(|cx| cx.span().span_context().trace_id())
                .filter(|t| *t != TraceId::INVALID)
                .map(|t| t.to_string())
        });
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&fields.message);
        text.push_str(&fields.text);
        let meta = event.metadata();
        push(LogLine {
            at: chrono::Utc::now(),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            trace_id,
            order_id,
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn lines_carry_span_fields_order_id_and_trace_id() {
        use opentelemetry::trace::TracerProvider as _;
        let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .build()
            .tracer("test");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(layer());
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("consume", topic = "t", order_id = tracing::field::Empty);
            span.record("order_id", "o-123");
            span.in_scope(|| tracing::info!(units = 2, "stock reserved"));
        });
        let lines = search(None, Some("o-123"), 10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(
            line.text.contains("consume{topic=t order_id=o-123}"),
            "{}",
            line.text
        );
        assert!(
            line.text.ends_with("stock reserved units=2"),
            "{}",
            line.text
        );
        let trace = line.trace_id.clone().expect("a trace id");
        assert_eq!(trace.len(), 32);
        assert_eq!(search(Some(&trace), None, 10).len(), 1);
    }
}
