//! The result of one scenario run: what `--json` writes, what the summary table shows and
//! what `compare` and `plot` read back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::procmon::Usage;
use crate::stats::Pcts;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// `switchboard` or `node` (or any label given with --target).
    pub target: String,
    /// Free-form label that groups comparable runs (defaults to the scenario).
    pub label: String,
    pub started_at_unix: u64,
    pub generator: String,
    pub params: serde_json::Value,
    /// Length of the measured window in seconds.
    pub window_s: f64,
    pub conns: ConnStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Handshake>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_publish: Option<ServerPublish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Resources>,
    pub generator_usage: Resources,
    /// Counters sampled every 250 ms through the run (server-publish), for telling when
    /// an outage began and ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Tick>,
}

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Tick {
    pub t_ms: u64,
    pub delivered: u64,
    pub acked: u64,
    pub sent: u64,
    pub connected: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnStats {
    pub planned: u64,
    pub connected: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Connections the server closed on its own.
    pub dropped: u64,
    pub session_ends: BTreeMap<String, u64>,
    pub generator_processes: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Handshake {
    pub count: u64,
    /// Successful handshakes per second from the first attempt to the last success.
    pub rate_per_s: f64,
    /// From the start of the attempt (ticket request included) to the CONNECT ack.
    pub latency_us: Pcts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_us: Option<Pcts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub publishers: u64,
    pub published: u64,
    pub acked: u64,
    pub publish_errors: BTreeMap<String, u64>,
    /// Whether loss is meaningful: false when receivers come and go (churn).
    pub loss_applicable: bool,
    /// Deliveries owed: for every room, its receivers times the messages acked into it.
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Every delivery, duplicates included.
    pub delivered: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    /// With per-message accounting (sequence tracking): deliveries of publishes whose
    /// publisher was told they failed (an error, a timeout). Not lost, not owed; a
    /// publisher that retries them makes duplicates.
    #[serde(default)]
    pub refused_delivered: u64,
    /// Whether `lost` counts acknowledged publishes missing at a receiver one by one
    /// (true), or is the difference of totals.
    #[serde(default)]
    pub lost_exact: bool,
    /// With `lost_exact`: the losses by `room/publisher` (admin lanes first, then sockets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_by_publisher: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub reordered: u64,
    pub throughput_per_s: f64,
    /// Receive time minus send time, over every delivery.
    pub latency_us: Pcts,
    pub ack_latency_us: Pcts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Revocation {
    pub requested: u64,
    pub observed: u64,
    pub missed: u64,
    pub request_errors: u64,
    /// From sending the revocation request to the `session_end` arriving.
    pub latency_us: Pcts,
    /// The admin API's answer time.
    pub request_us: Pcts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Churn {
    pub cycles: u64,
    pub handshakes: u64,
    pub handshakes_per_s: f64,
    pub latency_us: Pcts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resume {
    pub drops: u64,
    pub resumes: u64,
    pub recovered: u64,
    pub recovered_ratio: f64,
}

/// `server-publish`: messages published through the admin API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerPublish {
    /// Requests in flight at once (one logical publisher each).
    pub lanes: u64,
    /// The --rate cap in requests/s, if any.
    pub rate_cap: Option<f64>,
    pub requests: u64,
    /// 202 answers.
    pub accepted: u64,
    pub errors: BTreeMap<String, u64>,
    /// From the first request to the last answer, in seconds.
    pub span_s: f64,
    /// 202 answers per second over `span_s`.
    pub requests_per_s: f64,
    /// Deliveries at the receivers per second over `span_s`.
    pub deliveries_per_s: f64,
    /// From sending a request to reading its answer.
    pub request_us: Pcts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    #[serde(flatten)]
    pub usage: Usage,
    /// (RSS at the end of the window − RSS before connecting) / connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_conn_bytes: Option<f64>,
}

pub fn ms(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn pcts_row(t: &mut Vec<(String, String)>, name: &str, p: &Pcts) {
    t.push((
        name.to_string(),
        format!(
            "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} (n={})",
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max),
            p.count
        ),
    ));
}

fn map(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

impl Report {
    /// Server CPU time (seconds, summed over its processes) spent per million deliveries
    /// in the measured window: the cost of fan-out independent of how fast the generator
    /// published, and comparable between targets even when neither is saturated.
    pub fn server_cpu_s_per_million(&self) -> Option<f64> {
        let d = self.delivery.as_ref()?;
        let s = self.server.as_ref()?;
        (d.delivered > 0 && self.window_s > 0.0)
            .then(|| s.usage.cpu_percent / 100.0 * self.window_s / (d.delivered as f64 / 1e6))
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t: Vec<(String, String)> = Vec::new();
        let c = &self.conns;
        t.push(("target".into(), self.target.clone()));
        t.push(("window".into(), format!("{:.1} s", self.window_s)));
        t.push((
            "connections".into(),
            format!(
                "{} of {} ({} failed{}) over {} generator process(es)",
                c.connected,
                c.planned,
                c.failed,
                if c.failures.is_empty() { String::new() } else { format!(": {}", map(&c.failures)) },
                c.generator_processes
            ),
        ));
        if c.dropped > 0 || !c.session_ends.is_empty() {
            t.push((
                "dropped by server".into(),
                format!("{} (session_end: {})", c.dropped, map(&c.session_ends)),
            ));
        }
        if let Some(h) = &self.handshake {
            t.push(("handshakes".into(), format!("{} at {:.0}/s", h.count, h.rate_per_s)));
            pcts_row(&mut t, "handshake latency", &h.latency_us);
            if let Some(p) = &h.ticket_us {
                pcts_row(&mut t, "ticket request", p);
            }
        }
        if let Some(d) = &self.delivery {
            t.push((
                "published".into(),
                format!(
                    "{} by {} publisher(s), {} acked (errors: {})",
                    d.published,
                    d.publishers,
                    d.acked,
                    map(&d.publish_errors)
                ),
            ));
            if d.loss_applicable {
                t.push((
                    "delivered".into(),
                    format!(
                        "{} of {} expected · lost {} ({:.4}%) · duplicates {} · reordered {}",
                        d.received,
                        d.expected,
                        d.lost,
                        d.loss_ratio * 100.0,
                        d.duplicates,
                        d.reordered
                    ),
                ));
            } else {
                t.push(("delivered".into(), format!("{} (loss not tracked: receivers churn)", d.delivered)));
            }
            let cost = self
                .server_cpu_s_per_million()
                .map(|c| format!(" · server {c:.2} CPU-s per million deliveries"))
                .unwrap_or_default();
            t.push(("throughput".into(), format!("{:.0} deliveries/s{cost}", d.throughput_per_s)));
            pcts_row(&mut t, "delivery latency", &d.latency_us);
            pcts_row(&mut t, "publish ack latency", &d.ack_latency_us);
        }
        if let Some(r) = &self.revocation {
            t.push((
                "revocations".into(),
                format!(
                    "{} requested, {} observed, {} missed, {} request errors",
                    r.requested, r.observed, r.missed, r.request_errors
                ),
            ));
            pcts_row(&mut t, "revocation latency", &r.latency_us);
            pcts_row(&mut t, "admin request", &r.request_us);
        }
        if let Some(ch) = &self.churn {
            t.push((
                "churn".into(),
                format!("{} cycles, {} handshakes at {:.0}/s", ch.cycles, ch.handshakes, ch.handshakes_per_s),
            ));
            pcts_row(&mut t, "handshake latency", &ch.latency_us);
        }
        if let Some(r) = &self.resume {
            t.push((
                "resume".into(),
                format!(
                    "{} drops, {} resume attempts, {} recovered ({:.1}%)",
                    r.drops,
                    r.resumes,
                    r.recovered,
                    r.recovered_ratio * 100.0
                ),
            ));
        }
        if let Some(sp) = &self.server_publish {
            t.push((
                "admin publishes".into(),
                format!(
                    "{} of {} accepted (202) at {:.0}/s over {} lane(s){} (errors: {})",
                    sp.accepted,
                    sp.requests,
                    sp.requests_per_s,
                    sp.lanes,
                    sp.rate_cap.map(|r| format!(", capped at {r}/s")).unwrap_or_default(),
                    map(&sp.errors)
                ),
            ));
            t.push(("deliveries while publishing".into(), format!("{:.0}/s", sp.deliveries_per_s)));
            pcts_row(&mut t, "admin request latency", &sp.request_us);
        }
        let res = |name: &str, r: &Resources, t: &mut Vec<(String, String)>| {
            let u = &r.usage;
            let mut v = format!(
                "CPU {:.0}% avg, {:.0}% peak · RSS {} → {} (peak {})",
                u.cpu_percent,
                u.cpu_percent_peak,
                mib(u.rss_bytes_start),
                mib(u.rss_bytes_end),
                mib(u.rss_bytes_peak)
            );
            if let Some(p) = r.rss_per_conn_bytes {
                let _ = write!(v, " · {:.1} KiB/conn", p / 1024.0);
            }
            t.push((name.to_string(), v));
        };
        if let Some(s) = &self.server {
            res(&format!("server {:?}", s.usage.pids), s, &mut t);
        }
        res("generator", &self.generator_usage, &mut t);
        let w = t.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let mut out = format!("== {} ({})\n", self.scenario, self.label);
        for (k, v) in t {
            let _ = writeln!(out, "{k:<w$}  {v}");
        }
        out
    }
}
