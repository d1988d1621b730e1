//! The Prometheus metrics, also pushed over OTLP/HTTP (protobuf) when the standard
//! variables ask for it: the same families, names and labels as `/metrics`, so that a
//! dashboard reads the same either way.
//!
//! On when `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! unless `OTEL_METRICS_EXPORTER=none` or `OTEL_SDK_DISABLED=true`. Every
//! `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60,000) the registry is rendered, as for a
//! scrape, and its text turned into one OTLP request: counters become monotonic
//! cumulative sums (`_total` dropped, as OpenTelemetry names them), gauges gauges,
//! histograms explicit-bucket histograms with their exemplars (trace ids). One source
//! of truth, the registry, rather than a second set of instruments that could drift.
//!
//! The push runs as one task on the process's runtime; a slow collector delays only the
//! next push (`OTEL_METRIC_EXPORT_TIMEOUT`, default 10 s), never a handler.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::Metrics;

/// Where and how often to push, from the `OTEL_*` variables; `None` when off.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Option<Settings> {
        Settings::from(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    fn from(var: impl Fn(&str) -> Option<String>) -> Option<Settings> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        let url = match var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            Some(u) => u,
            None => format!("{}/v1/metrics", var("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')),
        };
        let ms = |k: &str, default: u64| {
            Duration::from_millis(var(k).and_then(|v| v.trim().parse().ok()).unwrap_or(default).max(1))
        };
        let headers = var("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
            .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|h| {
                h.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), percent_decode(v.trim())))
                    .collect()
            })
            .unwrap_or_default();
        Some(Settings {
            url,
            headers,
            interval: ms("OTEL_METRIC_EXPORT_INTERVAL", 60_000),
            timeout: ms("OTEL_METRIC_EXPORT_TIMEOUT", 10_000),
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) =
                std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the push task when the environment asks for it; `instance` becomes
/// `service.instance.id`.
pub fn start(metrics: Arc<Metrics>, instance: Option<&str>) -> Option<tokio::task::JoinHandle<()>> {
    let settings = Settings::from_env()?;
    let resource = resource(instance);
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP metrics: no HTTP client; not exporting");
            return None;
        }
    };
    tracing::info!(every_ms = settings.interval.as_millis() as u64, "exporting metrics over OTLP");
    let started = now_nanos();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let body = request(&metrics.encode(), resource.clone(), started, now_nanos()).encode_to_vec();
            let mut req = client
                .post(&settings.url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body);
            for (k, v) in &settings.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "OTLP metrics export refused"),
                Err(e) => tracing::warn!(error = %e, "OTLP metrics export failed"),
            }
        }
    }))
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.to_string())) }),
        ..Default::default()
    }
}

fn resource(instance: Option<&str>) -> Resource {
    let mut attributes = Vec::new();
    let extra = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    for (k, v) in extra.split(',').filter_map(|kv| kv.split_once('=')) {
        attributes.push(kv(k.trim(), &percent_decode(v.trim())));
    }
    if !attributes.iter().any(|a| a.key == "service.name") {
        let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "switchboard".into());
        attributes.push(kv("service.name", &name));
    }
    if let Some(id) = instance
        && !attributes.iter().any(|a| a.key == "service.instance.id")
    {
        attributes.push(kv("service.instance.id", id));
    }
    Resource { attributes, ..Default::default() }
}

/// One sample line of the text exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    exemplar: Option<(Vec<(String, String)>, f64)>,
}

/// `name{a="b",c="d"} 1.5 # {trace_id="…"} 0.2` → a sample; `None` for what is not one.
fn parse_sample(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(i) if line[..i].find(' ').is_none() => {
            let (labels, after) = parse_labels(&line[i + 1..])?;
            ((line[..i].to_string(), labels), after)
        }
        _ => {
            let (n, after) = line.split_once(' ')?;
            ((n.to_string(), Vec::new()), after)
        }
    };
    let (value_part, exemplar_part) = match rest.split_once(" # ") {
        Some((v, e)) => (v, Some(e)),
        None => (rest, None),
    };
    let value = parse_value(value_part.split_whitespace().next()?)?;
    let exemplar = exemplar_part.and_then(|e| {
        let e = e.trim().strip_prefix('{')?;
        let (labels, after) = parse_labels(e)?;
        Some((labels, parse_value(after.split_whitespace().next()?)?))
    });
    Some(Sample { name: series.0, labels: series.1, value, exemplar })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `a="b",c="d"}` (after the `{`), with `\\`, `\"` and `\n` escapes; returns the
/// labels and what follows the `}`.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i + 1,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        rest = &after[end..];
    }
}

/// A histogram series being assembled: its labels (without `le`), the point, and its
/// cumulative buckets as read (`le`, count).
type Series = (Vec<(String, String)>, HistogramDataPoint, Vec<(f64, u64)>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text exposition → one OTLP export request.
fn request(text: &str, resource: Resource, start: u64, now: u64) -> ExportMetricsServiceRequest {
    let mut metrics: Vec<Metric> = Vec::new();
    // The family being read: name, kind, help, unit.
    let mut family: Option<(String, Kind, String, String)> = None;
    let mut help = String::new();
    let mut unit = String::new();
    // Histogram series being assembled, by label set (without `le`).
    let mut hist: Vec<Series> = Vec::new();
    let attrs = |labels: &[(String, String)]| labels.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>();
    let flush = |metrics: &mut Vec<Metric>,
                 family: &Option<(String, Kind, String, String)>,
                 hist: &mut Vec<Series>| {
        if let Some((name, Kind::Histogram, help, unit)) = family {
            let data_points = hist
                .drain(..)
                .map(|(_, mut p, mut buckets)| {
                    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    // Prometheus buckets are cumulative; OTLP's are per bucket.
                    let mut prev = 0;
                    for (le, cum) in &buckets {
                        if le.is_finite() {
                            p.explicit_bounds.push(*le);
                        }
                        p.bucket_counts.push(cum.saturating_sub(prev));
                        prev = *cum;
                    }
                    p
                })
                .collect();
            metrics.push(Metric {
                name: name.clone(),
                description: help.clone(),
                unit: unit.clone(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            });
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name, arg) =
                (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match what {
                "HELP" => help = arg.to_string(),
                // prometheus-client writes UNIT after TYPE; other writers before it.
                "UNIT" => match &mut family {
                    Some((n, _, _, u)) if n == name => *u = arg.to_string(),
                    _ => unit = arg.to_string(),
                },
                "TYPE" => {
                    flush(&mut metrics, &family, &mut hist);
                    let kind = match arg {
                        "counter" => Some(Kind::Counter),
                        "gauge" => Some(Kind::Gauge),
                        "histogram" => Some(Kind::Histogram),
                        _ => None,
                    };
                    // HELP and UNIT come before TYPE in prometheus-client's output.
                    family = kind
                        .map(|k| (name.to_string(), k, std::mem::take(&mut help), std::mem::take(&mut unit)));
                }
                _ => {}
            }
            continue;
        }
        let (Some((fname, kind, fhelp, funit)), Some(s)) = (&family, parse_sample(line)) else { continue };
        let point = |s: &Sample| NumberDataPoint {
            attributes: attrs(&s.labels),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        };
        match kind {
            Kind::Counter if s.name == format!("{fname}_total") => {
                metrics.push(Metric {
                    name: fname.clone(),
                    description: fhelp.clone(),
                    unit: funit.clone(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point(&s)],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                });
            }
            Kind::Gauge if &s.name == fname => metrics.push(Metric {
                name: fname.clone(),
                description: fhelp.clone(),
                unit: funit.clone(),
                data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(&s)] })),
                ..Default::default()
            }),
            Kind::Histogram => {
                let le = s.labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| parse_value(v));
                let key: Vec<(String, String)> =
                    s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                let i = match hist.iter().position(|(k, _, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        let p = HistogramDataPoint {
                            attributes: attrs(&key),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            ..Default::default()
                        };
                        hist.push((key, p, Vec::new()));
                        hist.len() - 1
                    }
                };
                let (_, p, buckets) = &mut hist[i];
                match s.name.strip_prefix(fname.as_str()) {
                    Some("_bucket") => {
                        if let Some(le) = le {
                            buckets.push((le, s.value as u64));
                        }
                        if let Some((labels, v)) = &s.exemplar {
                            p.exemplars.push(Exemplar {
                                time_unix_nano: now,
                                trace_id: labels
                                    .iter()
                                    .find(|(k, _)| k == "trace_id")
                                    .and_then(|(_, t)| hex(t))
                                    .unwrap_or_default(),
                                value: Some(exemplar::Value::AsDouble(*v)),
                                ..Default::default()
                            });
                        }
                    }
                    Some("_sum") => p.sum = Some(s.value),
                    Some("_count") => p.count = s.value as u64,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    flush(&mut metrics, &family, &mut hist);
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "switchboard".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_otel_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(Settings::from(env(&[])), None);
        let s = Settings::from(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x,x-a=b"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ]))
        .expect("on");
        assert_eq!(s.url, "http://c:4318/v1/metrics");
        assert_eq!(s.headers, vec![("authorization".into(), "Bearer x".into()), ("x-a".into(), "b".into())]);
        assert_eq!(s.interval, Duration::from_millis(500));
        assert_eq!(s.timeout, Duration::from_secs(10));
        let s = Settings::from(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
        ]))
        .expect("on");
        assert_eq!(s.url, "http://m:9/custom");
        for off in [("OTEL_METRICS_EXPORTER", "none"), ("OTEL_SDK_DISABLED", "true")] {
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off].into_boxed_slice());
            assert_eq!(Settings::from(env(pairs)), None, "{off:?}");
        }
    }

    #[test]
    fn samples_parse_with_escapes_and_exemplars() {
        assert_eq!(
            parse_sample(r#"x_total{a="q\"u\\o",b="n\nl"} 3"#),
            Some(Sample {
                name: "x_total".into(),
                labels: vec![("a".into(), "q\"u\\o".into()), ("b".into(), "n\nl".into())],
                value: 3.0,
                exemplar: None,
            })
        );
        let s = parse_sample(r#"h_bucket{le="+Inf"} 2 # {trace_id="0af7"} 0.25"#).expect("sample");
        assert_eq!(s.value, 2.0);
        assert_eq!(s.exemplar, Some((vec![("trace_id".into(), "0af7".into())], 0.25)));
        assert_eq!(parse_sample("g 1.5").map(|s| s.value), Some(1.5));
        for junk in ["", "x", "x{a=\"b\"", "x{a=b} 1", "x notanumber"] {
            assert_eq!(parse_sample(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_registry_becomes_otlp_sums_gauges_and_histograms() {
        let m = Metrics::new();
        m.connections.get_or_create(&crate::tenant("acme")).set(3);
        m.handshakes.get_or_create(&crate::tenant_code("acme", "accepted")).inc_by(5);
        m.delivery_seconds.observe(
            0.003,
            Some(vec![("trace_id", "0af7651916cd43dd8448eb211c80319c".into())]),
            None,
        );
        m.delivery_seconds.observe(20.0, None, None);
        let req = request(&m.encode(), resource(Some("edge-1")), 1, 2);
        let rm = &req.resource_metrics[0];
        assert!(
            rm.resource.as_ref().expect("resource").attributes.iter().any(|a| a.key == "service.instance.id")
        );
        let metrics = &rm.scope_metrics[0].metrics;
        let by =
            |n: &str| metrics.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("{n} in {metrics:?}"));
        let Some(metric::Data::Gauge(g)) = &by("switchboard_connections").data else { panic!("a gauge") };
        assert_eq!(g.data_points[0].value, Some(number_data_point::Value::AsDouble(3.0)));
        assert_eq!(g.data_points[0].attributes, vec![kv("tenant", "acme")]);
        let Some(metric::Data::Sum(s)) = &by("switchboard_handshakes").data else { panic!("a sum") };
        assert!(s.is_monotonic);
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsDouble(5.0)));
        let h = by("switchboard_delivery_latency_seconds");
        assert_eq!(h.unit, "seconds");
        let Some(metric::Data::Histogram(h)) = &h.data else { panic!("a histogram") };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum), (2, Some(20.003)));
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1, "one more bucket than bounds (+Inf)");
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
        assert_eq!(*p.bucket_counts.last().expect("+Inf"), 1, "20 s is beyond the last bound");
        assert_eq!(p.exemplars.len(), 1);
        assert_eq!(p.exemplars[0].trace_id.len(), 16);
        assert_eq!(p.exemplars[0].value, Some(exemplar::Value::AsDouble(0.003)));
    }
}
