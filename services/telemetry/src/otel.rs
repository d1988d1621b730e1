//! OpenTelemetry: spans exported over OTLP/HTTP (protobuf) when the standard `OTEL_*`
//! variables ask for it, and the W3C trace context that carries a trace across nodes.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
//! (and `OTEL_SDK_DISABLED` is not `true`, `OTEL_TRACES_EXPORTER` not `none`). The SDK
//! reads the rest itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`.
//!
//! Spans leave through the SDK's batch processor, which runs on its own thread with a
//! bounded queue: a slow or dead collector drops spans, it never blocks a handler. The
//! processor thread is not a Tokio thread, so the HTTP request itself is spawned onto the
//! process's runtime ([`RuntimeClient`]) and awaited through a oneshot channel.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context fields (`traceparent`, `tracestate`) as they travel in a bus
/// message (the same type as `bus::TraceContext`).
pub type TraceContext = BTreeMap<String, String>;

struct Carrier<'a>(&'a mut TraceContext);
impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}
struct Reader<'a>(&'a TraceContext);
impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Whether the environment asks for trace export.
pub fn export_requested() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let none = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && !none && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Builds the tracer provider that exports over OTLP/HTTP. `instance` becomes
/// `service.instance.id` unless `OTEL_RESOURCE_ATTRIBUTES` names one.
pub fn provider(
    runtime: tokio::runtime::Handle,
    instance: Option<&str>,
) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    if protocol != "http/protobuf" {
        anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?} is not supported: Switchboard exports over \
             http/protobuf (an OpenTelemetry Collector listens for it on port 4318)"
        );
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP HTTP client: {e}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(RuntimeClient { client, runtime })
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP exporter (OTEL_EXPORTER_OTLP_*): {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("switchboard");
    }
    let attrs = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    if let Some(id) = instance
        && !attrs.contains("service.instance.id=")
    {
        resource =
            resource.with_attribute(opentelemetry::KeyValue::new("service.instance.id", id.to_string()));
    }
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// The trace context of the current span, to send along with a bus message; empty when
/// no trace is being recorded.
pub fn current_context() -> TraceContext {
    let cx = tracing::Span::current().context();
    let mut out = TraceContext::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut Carrier(&mut out));
    }
    out
}

/// Makes `span` a child of the remote span described by `trace` (from a bus message).
pub fn set_remote_parent(span: &tracing::Span, trace: &TraceContext) {
    if trace.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Reader(trace));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of `span` as 32 hex digits, or `None` when it is not recorded: written into
/// the span's `trace_id` field so that JSON logs carry it.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// An [`opentelemetry_http::HttpClient`] over our reqwest client whose requests run on the
/// process's Tokio runtime, whatever thread asks.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let r = async {
                let req = reqwest::Request::try_from(request)?;
                let res = client.execute(req).await?;
                let mut out = http::Response::builder().status(res.status().as_u16());
                for (k, v) in res.headers() {
                    out = out.header(k.as_str(), v.as_bytes());
                }
                let body = res.bytes().await?;
                Ok::<_, opentelemetry_http::HttpError>(out.body(body)?)
            }
            .await;
            let _ = tx.send(r);
        });
        rx.await.map_err(|_| "the runtime dropped the OTLP request".into()).and_then(|r| r)
    }
}
