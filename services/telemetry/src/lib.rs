//! Logs and metrics for every role: the tracing subscriber (text or JSON, filtered by
//! `SWITCHBOARD_LOG`) and the Prometheus registry served at `/metrics`.
//!
//! It holds no business logic; the metric families are defined here once so that the
//! edge and the admin API count the same things under the same names.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

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

/// Installs the global tracing subscriber, writing to stderr. Safe to call twice (the
/// second call does nothing), which keeps tests simple.
pub fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
    Ok(())
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

/// Labels for a tenant-scoped series.
pub fn tenant(t: &str) -> Labels {
    vec![("tenant", t.to_string())]
}

/// Labels for a tenant-scoped series with a code.
pub fn tenant_code(t: &str, code: &str) -> Labels {
    vec![("tenant", t.to_string()), ("code", code.to_string())]
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
    fn redacts_credentials_in_queries() {
        assert_eq!(
            redact_query("EIO=4&transport=polling&token=abc.def&ticket=t&x=1"),
            "EIO=4&transport=polling&token=REDACTED&ticket=REDACTED&x=1"
        );
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn encodes_families() {
        let m = Metrics::new();
        m.handshakes.get_or_create(&tenant_code("demo", "invalid_token")).inc();
        let s = m.encode();
        assert!(s.contains("switchboard_handshakes_total{tenant=\"demo\",code=\"invalid_token\"} 1"), "{s}");
    }
}
