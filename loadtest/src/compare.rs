//! Side-by-side comparison of runs: one row per metric, one column per target, and the
//! ratio of each other target to the baseline (Switchboard).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::report::Report;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub metric: String,
    pub unit: String,
    /// Whether a lower value is better.
    pub lower_is_better: bool,
    pub values: BTreeMap<String, f64>,
    /// other target's value / baseline's value, per other target.
    pub ratio_to_baseline: BTreeMap<String, f64>,
    /// The target with the best value, when it beats the others by more than 5%.
    pub better: Option<String>,
}

fn better(values: &BTreeMap<String, f64>, lower: bool) -> Option<String> {
    if values.len() < 2 {
        return None;
    }
    let mut v: Vec<(&String, f64)> = values.iter().map(|(k, v)| (k, *v)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    if !lower {
        v.reverse();
    }
    let (best, second) = (v[0], v[1]);
    let gap = (best.1 - second.1).abs() / best.1.abs().max(second.1.abs());
    (gap > 0.05).then(|| best.0.clone())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub baseline: String,
    pub targets: Vec<String>,
    pub rows: Vec<Row>,
    pub runs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<serde_json::Value>,
}

type Metric = (&'static str, &'static str, bool, fn(&Report) -> Option<f64>);

fn metrics() -> Vec<Metric> {
    vec![
        ("handshakes/s", "1/s", false, |r| r.handshake.as_ref().map(|h| h.rate_per_s)),
        ("handshake p50", "ms", true, |r| r.handshake.as_ref().map(|h| h.latency_us.p50 as f64 / 1e3)),
        ("handshake p99", "ms", true, |r| r.handshake.as_ref().map(|h| h.latency_us.p99 as f64 / 1e3)),
        ("delivery p50", "ms", true, |r| r.delivery.as_ref().map(|d| d.latency_us.p50 as f64 / 1e3)),
        ("delivery p90", "ms", true, |r| r.delivery.as_ref().map(|d| d.latency_us.p90 as f64 / 1e3)),
        ("delivery p99", "ms", true, |r| r.delivery.as_ref().map(|d| d.latency_us.p99 as f64 / 1e3)),
        ("delivery p99.9", "ms", true, |r| r.delivery.as_ref().map(|d| d.latency_us.p999 as f64 / 1e3)),
        ("deliveries/s", "1/s", false, |r| r.delivery.as_ref().map(|d| d.throughput_per_s)),
        ("server CPU per million deliveries", "CPU-s", true, |r| r.server_cpu_s_per_million()),
        ("deliveries/s per server core", "1/s", false, |r| r.server_cpu_s_per_million().map(|c| 1e6 / c)),
        ("loss", "%", true, |r| {
            r.delivery.as_ref().filter(|d| d.loss_applicable).map(|d| d.loss_ratio * 100.0)
        }),
        ("duplicates", "", true, |r| {
            r.delivery.as_ref().filter(|d| d.loss_applicable).map(|d| d.duplicates as f64)
        }),
        ("reordered", "", true, |r| {
            r.delivery.as_ref().filter(|d| d.loss_applicable).map(|d| d.reordered as f64)
        }),
        ("churn handshakes/s", "1/s", false, |r| r.churn.as_ref().map(|c| c.handshakes_per_s)),
        ("churn handshake p99", "ms", true, |r| r.churn.as_ref().map(|c| c.latency_us.p99 as f64 / 1e3)),
        ("revocation p50", "ms", true, |r| r.revocation.as_ref().map(|v| v.latency_us.p50 as f64 / 1e3)),
        ("revocation p99", "ms", true, |r| r.revocation.as_ref().map(|v| v.latency_us.p99 as f64 / 1e3)),
        ("revocations missed", "", true, |r| r.revocation.as_ref().map(|v| v.missed as f64)),
        ("admin publishes/s", "1/s", false, |r| r.server_publish.as_ref().map(|s| s.requests_per_s)),
        ("admin request p99", "ms", true, |r| {
            r.server_publish.as_ref().map(|s| s.request_us.p99 as f64 / 1e3)
        }),
        ("resumed sessions", "%", false, |r| r.resume.as_ref().map(|v| v.recovered_ratio * 100.0)),
        ("failed connections", "", true, |r| Some(r.conns.failed as f64)),
        ("server CPU", "% of a core", true, |r| r.server.as_ref().map(|s| s.usage.cpu_percent)),
        ("server RSS peak", "MiB", true, |r| {
            r.server.as_ref().map(|s| s.usage.rss_bytes_peak as f64 / 1048576.0)
        }),
        ("server RSS/conn", "KiB", true, |r| {
            r.server.as_ref().and_then(|s| s.rss_per_conn_bytes).map(|b| b / 1024.0)
        }),
        ("generator CPU", "% of a core", true, |r| Some(r.generator_usage.usage.cpu_percent)),
        ("generator RSS/conn", "KiB", true, |r| r.generator_usage.rss_per_conn_bytes.map(|b| b / 1024.0)),
    ]
}

pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Report>> {
    paths
        .iter()
        .map(|p| {
            let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

pub fn summarize(reports: &[Report], baseline: &str, paths: &[PathBuf]) -> Summary {
    let mut targets: Vec<String> = Vec::new();
    for r in reports {
        if !targets.contains(&r.target) {
            targets.push(r.target.clone());
        }
    }
    targets.sort_by_key(|t| (t != baseline, t.clone()));
    let mut labels: Vec<String> = Vec::new();
    for r in reports {
        if !labels.contains(&r.label) {
            labels.push(r.label.clone());
        }
    }
    let mut rows = Vec::new();
    for label in &labels {
        for (metric, unit, lower, f) in metrics() {
            let mut values = BTreeMap::new();
            for r in reports.iter().filter(|r| &r.label == label) {
                if let Some(v) = f(r) {
                    values.insert(r.target.clone(), v);
                }
            }
            if values.is_empty() {
                continue;
            }
            let mut ratio_to_baseline = BTreeMap::new();
            if let Some(&b) = values.get(baseline) {
                for (t, &v) in &values {
                    if t != baseline && b != 0.0 {
                        ratio_to_baseline.insert(t.clone(), v / b);
                    }
                }
            }
            rows.push(Row {
                better: better(&values, lower),
                label: label.clone(),
                metric: metric.into(),
                unit: unit.into(),
                lower_is_better: lower,
                values,
                ratio_to_baseline,
            });
        }
    }
    Summary {
        baseline: baseline.to_string(),
        targets,
        rows,
        runs: paths.iter().map(|p| p.display().to_string()).collect(),
        machine: None,
    }
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A Markdown table of the summary.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
    let others: Vec<&String> = s.targets.iter().filter(|t| **t != s.baseline).collect();
    let _ = write!(out, "| scenario | metric |");
    for t in &s.targets {
        let _ = write!(out, " {t} |");
    }
    for t in &others {
        let _ = write!(out, " {t} / {} |", s.baseline);
    }
    out.push_str(" better |\n");
    out.push_str(&"|---".repeat(3 + s.targets.len() + others.len()));
    out.push_str("|\n");
    for r in &s.rows {
        let unit = if r.unit.is_empty() { String::new() } else { format!(" ({})", r.unit) };
        let _ = write!(out, "| {} | {}{unit} |", r.label, r.metric);
        for t in &s.targets {
            let _ = write!(out, " {} |", r.values.get(t).map(|v| num(*v)).unwrap_or_else(|| "–".into()));
        }
        for t in &others {
            let _ = write!(
                out,
                " {} |",
                r.ratio_to_baseline.get(*t).map(|v| format!("{v:.2}×")).unwrap_or_else(|| "–".into())
            );
        }
        let _ =
            writeln!(out, " {} |", r.better.as_deref().unwrap_or(if r.values.len() > 1 { "≈" } else { "" }));
    }
    out
}

pub fn write(s: &Summary, json: Option<&Path>, md: Option<&Path>) -> anyhow::Result<()> {
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(s)?)?;
    }
    if let Some(p) = md {
        std::fs::write(p, markdown(s))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_better_target() {
        let m = |a: f64, b: f64| BTreeMap::from([("node".to_string(), a), ("switchboard".to_string(), b)]);
        assert_eq!(better(&m(10.0, 5.0), true).as_deref(), Some("switchboard"));
        assert_eq!(better(&m(10.0, 5.0), false).as_deref(), Some("node"));
        assert_eq!(better(&m(10.0, 9.8), true), None);
        assert_eq!(better(&m(0.0, 0.0), true), None);
    }
}
