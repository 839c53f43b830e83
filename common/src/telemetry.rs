//! Logging: Cloud Logging JSON lines on Cloud Run, readable text locally.
//!
//! The JSON layer writes the special fields Cloud Logging understands (`severity`, `message`,
//! `time`, `logging.googleapis.com/trace`, `logging.googleapis.com/spanId`). The trace comes
//! from the request span's `trace_id` field, which the HTTP layer fills from `traceparent` or
//! `X-Cloud-Trace-Context`. tracing-stackdriver derives the trace only from OpenTelemetry span
//! ids and camel-cases every key, so the few lines below do that job directly.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::PlatformConfig;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(platform: &PlatformConfig) {
    let filter =
        EnvFilter::try_new(&platform.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if platform.json_logs() {
        let _ = registry
            .with(CloudLoggingLayer::new(
                platform.project.clone(),
                std::io::stdout,
            ))
            .try_init();
    } else {
        let _ = registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init();
    }
}

/// The trace and span id carried by a request, from W3C `traceparent` or `X-Cloud-Trace-Context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span id, as given (hex for traceparent, decimal for X-Cloud-Trace-Context).
    pub span_id: Option<String>,
}

impl TraceContext {
    /// Parses `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when malformed or all zero.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let _flags = parts.next()?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: Some(span_id.to_ascii_lowercase()),
        })
    }

    /// Parses `X-Cloud-Trace-Context` (`TRACE_ID/SPAN_ID;o=OPTIONS`, span and options optional).
    pub fn from_cloud_trace_context(value: &str) -> Option<Self> {
        let value = value.trim();
        let (trace_id, rest) = match value.split_once('/') {
            Some((t, r)) => (t, Some(r)),
            None => (value.split(';').next().unwrap_or(value), None),
        };
        if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let span_id = rest
            .and_then(|r| r.split(';').next())
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned);
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id,
        })
    }
}

/// A layer writing one Cloud Logging JSON object per event.
pub struct CloudLoggingLayer<W> {
    project: Option<String>,
    writer: W,
}

impl<W> CloudLoggingLayer<W> {
    /// `project` turns `trace_id` into `projects/{project}/traces/{trace_id}`.
    pub fn new(project: Option<String>, writer: W) -> Self {
        Self { project, writer }
    }
}

struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.0.insert(field.name().to_owned(), Value::from(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("severity".into(), Value::from(severity(meta.level())));
        line.insert(
            "time".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("target".into(), Value::from(meta.target()));
        if let Some(scope) = ctx.event_scope(event) {
            let mut span_names = Vec::new();
            for span in scope.from_root() {
                span_names.push(span.name());
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
            line.insert("span".into(), Value::from(span_names.join(":")));
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields.remove("message").unwrap_or_else(|| Value::from(""));
        line.extend(fields);
        line.insert("message".into(), message);
        if let Some(Value::String(trace_id)) = line.remove("trace_id") {
            let trace = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace_id}"),
                None => trace_id,
            };
            line.insert("logging.googleapis.com/trace".into(), Value::from(trace));
        }
        if let Some(span_id) = line.remove("span_id") {
            line.insert("logging.googleapis.com/spanId".into(), span_id);
        }
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        let _ = self.writer.make_writer().write_all(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn traceparent_is_parsed_and_invalid_ones_are_refused() {
        let t = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(
            TraceContext::from_traceparent(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
            )
            .is_none()
        );
        assert!(TraceContext::from_traceparent("00-xyz-00f067aa0ba902b7-01").is_none());
    }

    #[test]
    fn cloud_trace_context_is_parsed() {
        let t = TraceContext::from_cloud_trace_context("105445aa7843bc8bf206b12000100000/1;o=1")
            .unwrap();
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("1"));
        let t = TraceContext::from_cloud_trace_context("105445aa7843bc8bf206b12000100000").unwrap();
        assert_eq!(t.span_id, None);
        assert!(TraceContext::from_cloud_trace_context("short/1").is_none());
    }

    #[test]
    fn json_lines_carry_severity_message_and_the_cloud_trace() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry()
            .with(CloudLoggingLayer::new(Some("proj".into()), buf.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                method = "GET"
            );
            let _g = span.enter();
            tracing::warn!(status = 503, "dependency down");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(v["message"], "dependency down");
        assert_eq!(v["status"], 503);
        assert_eq!(v["method"], "GET");
        assert_eq!(
            v["logging.googleapis.com/trace"],
            "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
