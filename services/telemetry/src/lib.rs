//! Logs and metrics for every role: the tracing subscriber (text or JSON, filtered by
//! `SWITCHBOARD_LOG`) and the Prometheus registry served at `/metrics`.
//!
//! It holds no business logic; the metric families are defined here once so that the
//! edge and the admin API count the same things under the same names.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use tracing_subscriber::EnvFilter;

pub mod otel;
pub mod otlp_metrics;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format must be text or json, not {s:?}")),
        }
    }
}

/// What [`init`] installed; [`Telemetry::shutdown`] flushes spans still queued.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (the `OTEL_*` variables asked for it).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still queued (bounded by the exporter's timeout) and stops.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global tracing subscriber: logs to stderr (text or JSON, filtered by
/// `filter`), and spans to OTLP when the `OTEL_*` variables ask for it (see [`otel`]),
/// with `instance` as `service.instance.id`. Needs the Tokio runtime the OTLP requests
/// run on. Safe to call twice (the second call does nothing), which keeps tests simple.
pub fn init(
    filter: &str,
    format: LogFormat,
    runtime: tokio::runtime::Handle,
    instance: Option<&str>,
) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let hint = filter.max_level_hint();
    let provider = if otel::export_requested() { Some(otel::provider(runtime, instance)?) } else { None };
    // Other crates never log below info, whatever the filter says: at debug and trace
    // they print what crosses the wire (WebSocket frames with auth payloads, HTTP headers,
    // Redis commands with tickets and key secrets), and secrets must not reach logs.
    use tracing_subscriber::filter::FilterExt;
    let filter = filter.and(tracing_subscriber::filter::filter_fn(|m| {
        *m.level() <= tracing::Level::INFO || is_ours(m.target())
    }));
    let logs: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let spans = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider;
        // Spans are exported whatever the log filter says (`SWITCHBOARD_LOG=warn` must not
        // turn tracing off), but only our own crates' spans.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("switchboard"))
            .with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_span() && is_ours(m.target())))
    });
    if tracing_subscriber::registry().with(logs).with(spans).try_init().is_ok() {
        log::set_max_level(log_max_level(hint));
    }
    Ok(Telemetry { provider })
}

/// The most verbose `log` record worth forming. Records from crates that use `log`
/// (tungstenite logs every frame at trace) reach tracing through its `LogTracer`, which
/// has no per-callsite cache: each one is built and run through the filter only to be
/// dropped, about a seventh of the edge's CPU time under fan-out. Only our crates log
/// below info, and they use tracing, so `log` is cut at info (or the filter's own
/// maximum, if lower) and a dropped record costs a load and a compare.
fn log_max_level(hint: Option<tracing::level_filters::LevelFilter>) -> log::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match hint.map(|h| h.min(LevelFilter::INFO)) {
        Some(LevelFilter::OFF) => log::LevelFilter::Off,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    }
}

/// Our crates' tracing targets (the crate name is the target's first segment).
fn is_ours(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    matches!(krate, "edge" | "admin" | "bus" | "state" | "switchboard" | "policy")
}

type Labels = Vec<(&'static str, String)>;

/// The metric families every role shares.
pub struct Metrics {
    registry: Registry,
    /// Open Socket.IO connections, by tenant.
    pub connections: Family<Labels, Gauge>,
    /// Handshakes by tenant, outcome (`accepted`/`refused`) and code.
    pub handshakes: Family<Labels, Counter>,
    /// Messages published into rooms, by tenant.
    pub messages_in: Family<Labels, Counter>,
    /// Messages delivered to sockets, by tenant.
    pub messages_out: Family<Labels, Counter>,
    /// Refused events, by tenant, event and code.
    pub event_errors: Family<Labels, Counter>,
    /// Sessions ended by the server, by tenant and code.
    pub sessions_ended: Family<Labels, Counter>,
    /// Admin API requests, by route and status.
    pub admin_requests: Family<Labels, Counter>,
    /// Room messages this node received from the bus, by tenant: with interest-based
    /// routing, a node without members of a room receives none of its messages.
    pub bus_received: Family<Labels, Counter>,
    /// Deliveries a socket could not take because its outgoing queue was full (a client
    /// far behind), by tenant: those events reach it only if it reconnects and resumes.
    pub deliveries_dropped: Family<Labels, Counter>,
    /// 1 when the bus keeps room history (NATS with JetStream, or one node), 0 on a plain
    /// NATS server: resumes then start fresh (`recovered: false`).
    pub bus_history: Gauge,
    /// Rooms with at least one subscriber on this node, by tenant.
    pub rooms: Family<Labels, Gauge>,
    /// Handshake duration from CONNECT to the decision, by outcome (`accepted`/`refused`);
    /// exemplars carry the handshake's trace id when it is traced.
    pub handshake_seconds: Family<Labels, HistogramWithExemplars<Labels>>,
    /// Time `policy` took to find and verify a credential.
    pub policy_seconds: Histogram,
    /// Publish (the bus took it) to this node receiving it from the bus.
    pub bus_lag_seconds: Histogram,
    /// Publish to the event being queued on this node's sockets; exemplars carry the
    /// publish's trace id when it is traced.
    pub delivery_seconds: HistogramWithExemplars<Labels>,
    /// A control message (revocation, kick, tenant change) sent to acted on, on this node.
    pub control_seconds: Family<Labels, Histogram>,
    /// Webhook events by tenant and outcome: `sent`, `retried` (counted per event per
    /// retry), `dropped` (gave up, queue full, or refused by the receiver).
    pub webhook_events: Family<Labels, Counter>,
    /// Subscribe hook decisions by tenant and outcome: `allow`, `deny`, `error`
    /// (fail-closed), each also `cached` when answered from the cache.
    pub subscribe_hook: Family<Labels, Counter>,
}

/// Buckets for latencies from a fraction of a millisecond to ten seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

fn latency() -> Histogram {
    Histogram::new(latency_buckets())
}

fn latency_with_exemplars() -> HistogramWithExemplars<Labels> {
    HistogramWithExemplars::new(latency_buckets())
}

/// The exemplar for an observation made in `span`: its trace id, when it is traced
/// (OpenMetrics exemplars, and OTLP ones through [`otlp_metrics`]).
pub fn exemplar(span: &tracing::Span) -> Option<Labels> {
    otel::trace_id(span).map(|id| vec![("trace_id", id)])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard");
        let connections = Family::<Labels, Gauge>::default();
        let handshakes = Family::<Labels, Counter>::default();
        let messages_in = Family::<Labels, Counter>::default();
        let messages_out = Family::<Labels, Counter>::default();
        let event_errors = Family::<Labels, Counter>::default();
        let sessions_ended = Family::<Labels, Counter>::default();
        let admin_requests = Family::<Labels, Counter>::default();
        let bus_received = Family::<Labels, Counter>::default();
        let deliveries_dropped = Family::<Labels, Counter>::default();
        let bus_history = Gauge::default();
        let rooms = Family::<Labels, Gauge>::default();
        let handshake_seconds = Family::<Labels, HistogramWithExemplars<Labels>>::new_with_constructor(
            latency_with_exemplars as fn() -> HistogramWithExemplars<Labels>,
        );
        let policy_seconds = latency();
        let bus_lag_seconds = latency();
        let delivery_seconds = latency_with_exemplars();
        let control_seconds = Family::<Labels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let webhook_events = Family::<Labels, Counter>::default();
        let subscribe_hook = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_events",
            "Webhook events by outcome (sent, retried, dropped)",
            webhook_events.clone(),
        );
        registry.register("subscribe_hook", "Subscribe hook decisions by outcome", subscribe_hook.clone());
        registry.register("rooms", "Rooms with subscribers on this node", rooms.clone());
        registry.register_with_unit(
            "handshake_duration",
            "Socket.IO handshakes, CONNECT to decision, by outcome",
            Unit::Seconds,
            handshake_seconds.clone(),
        );
        registry.register_with_unit(
            "policy_decision_duration",
            "Finding and verifying a handshake's credential",
            Unit::Seconds,
            policy_seconds.clone(),
        );
        registry.register_with_unit(
            "bus_lag",
            "From a publish being taken by the bus to this node receiving it",
            Unit::Seconds,
            bus_lag_seconds.clone(),
        );
        registry.register_with_unit(
            "delivery_latency",
            "From a publish being taken by the bus to its event being queued on this node's sockets",
            Unit::Seconds,
            delivery_seconds.clone(),
        );
        registry.register_with_unit(
            "control_propagation",
            "From a control message (revocation, kick, tenant change) being sent to this node acting on it, by kind",
            Unit::Seconds,
            control_seconds.clone(),
        );
        registry.register(
            "bus_history_enabled",
            "1 when the bus keeps room history for resumes (JetStream), 0 when it does not",
            bus_history.clone(),
        );
        registry.register(
            "deliveries_dropped",
            "Deliveries refused by a socket's full outgoing queue",
            deliveries_dropped.clone(),
        );
        registry.register("bus_received", "Room messages received from the bus", bus_received.clone());
        registry.register("connections", "Open Socket.IO connections", connections.clone());
        registry.register("handshakes", "Socket.IO handshakes by outcome and code", handshakes.clone());
        registry.register("messages_in", "Messages published into rooms", messages_in.clone());
        registry.register("messages_out", "Messages delivered to sockets", messages_out.clone());
        registry.register("event_errors", "Client events refused, by code", event_errors.clone());
        registry.register("sessions_ended", "Sessions ended by the server, by code", sessions_ended.clone());
        registry.register("admin_requests", "Admin API requests by status", admin_requests.clone());
        Metrics {
            registry,
            connections,
            handshakes,
            messages_in,
            messages_out,
            event_errors,
            sessions_ended,
            admin_requests,
            bus_received,
            deliveries_dropped,
            bus_history,
            rooms,
            handshake_seconds,
            policy_seconds,
            bus_lag_seconds,
            delivery_seconds,
            control_seconds,
            webhook_events,
            subscribe_hook,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }

    pub fn shared() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }
}

/// At most this many distinct tenants get series of their own (`SWITCHBOARD_METRICS_MAX_TENANTS`,
/// default 1,000); the rest are counted under `tenant="_other"`, so that a service with many
/// tenants cannot blow up its Prometheus.
fn max_tenants() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("SWITCHBOARD_METRICS_MAX_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
    })
}

/// The tenant label for `t`, under the cardinality guard.
pub fn tenant_label(t: &str) -> String {
    static SEEN: std::sync::OnceLock<parking_lot::RwLock<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    guarded(SEEN.get_or_init(Default::default), max_tenants(), t)
}

fn guarded(seen: &parking_lot::RwLock<std::collections::HashSet<String>>, max: usize, t: &str) -> String {
    if t.is_empty() || seen.read().contains(t) {
        return t.to_string();
    }
    let mut w = seen.write();
    if w.contains(t) || w.len() < max {
        w.insert(t.to_string());
        t.to_string()
    } else {
        OTHER.to_string()
    }
}

/// The tenant label of tenants past the cardinality guard.
pub const OTHER: &str = "_other";

/// Labels for a tenant-scoped series.
pub fn tenant(t: &str) -> Labels {
    vec![("tenant", tenant_label(t))]
}

/// Labels for a tenant-scoped series with a code.
pub fn tenant_code(t: &str, code: &str) -> Labels {
    vec![("tenant", tenant_label(t)), ("code", code.to_string())]
}

/// Labels with one `name="value"` pair (histograms by outcome or kind).
pub fn label(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_string())]
}

/// Replaces the value of `token=` and `ticket=` query parameters with `REDACTED`, so that a
/// URL can be logged.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if matches!(k, "token" | "ticket" | "access_token") => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_are_cut_at_info_or_the_filters_maximum() {
        use tracing::level_filters::LevelFilter;
        let at = |f: &str| log_max_level(EnvFilter::try_new(f).expect("a valid filter").max_level_hint());
        assert_eq!(at("trace"), log::LevelFilter::Info);
        assert_eq!(at("edge=trace,warn"), log::LevelFilter::Info);
        assert_eq!(at("warn"), log::LevelFilter::Warn);
        assert_eq!(at("error"), log::LevelFilter::Error);
        assert_eq!(at("off"), log::LevelFilter::Off);
        assert_eq!(log_max_level(None), log::LevelFilter::Info);
        assert_eq!(log_max_level(Some(LevelFilter::DEBUG)), log::LevelFilter::Info);
    }

    #[test]
    fn redacts_credentials_in_queries() {
        assert_eq!(
            redact_query("EIO=4&transport=polling&token=abc.def&ticket=t&x=1"),
            "EIO=4&transport=polling&token=REDACTED&ticket=REDACTED&x=1"
        );
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn tenant_labels_are_capped() {
        let seen = Default::default();
        assert_eq!(guarded(&seen, 2, "a"), "a");
        assert_eq!(guarded(&seen, 2, "b"), "b");
        assert_eq!(guarded(&seen, 2, "c"), OTHER, "past the cap");
        assert_eq!(guarded(&seen, 2, "a"), "a", "known tenants keep their label");
        assert_eq!(guarded(&seen, 2, ""), "", "the no-tenant label is not counted");
    }

    #[test]
    fn histograms_follow_prometheus_naming() {
        let m = Metrics::new();
        m.delivery_seconds.observe(0.002, None, None);
        m.handshake_seconds.get_or_create(&label("outcome", "accepted")).observe(0.01, None, None);
        let s = m.encode();
        assert!(s.contains("switchboard_delivery_latency_seconds_bucket{le=\"0.0025\"} 1"), "{s}");
        assert!(s.contains("switchboard_handshake_duration_seconds_count{outcome=\"accepted\"} 1"), "{s}");
    }

    /// The Grafana dashboard the Helm chart ships queries only metrics that exist.
    #[test]
    fn the_dashboard_queries_metrics_that_exist() {
        let m = Metrics::new();
        let t = tenant_code("t", "c");
        for f in [&m.handshakes, &m.messages_in, &m.messages_out, &m.event_errors, &m.sessions_ended]
            .into_iter()
            .chain([&m.admin_requests, &m.bus_received, &m.deliveries_dropped])
        {
            f.get_or_create(&t).inc();
        }
        m.connections.get_or_create(&t).inc();
        m.rooms.get_or_create(&t).inc();
        m.handshake_seconds.get_or_create(&t).observe(0.1, None, None);
        m.control_seconds.get_or_create(&t).observe(0.1);
        m.policy_seconds.observe(0.1);
        m.bus_lag_seconds.observe(0.1);
        m.delivery_seconds.observe(0.1, None, None);
        let exported = m.encode();
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/switchboard/dashboards/switchboard.json");
        let dashboard = std::fs::read_to_string(path).expect("the dashboard");
        let mut used = 0;
        for (i, _) in dashboard.match_indices("switchboard_") {
            let name: String =
                dashboard[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if name == "switchboard_" {
                continue;
            }
            used += 1;
            let series = exported
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")));
            assert!(series, "the dashboard queries {name}, which is not exported");
        }
        assert!(used >= 10, "the dashboard queries metrics: {used}");
    }

    #[test]
    fn encodes_families() {
        let m = Metrics::new();
        m.handshakes.get_or_create(&tenant_code("demo", "invalid_token")).inc();
        let s = m.encode();
        assert!(s.contains("switchboard_handshakes_total{tenant=\"demo\",code=\"invalid_token\"} 1"), "{s}");
    }
}
