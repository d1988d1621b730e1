//! The bundled scenarios (SPEC §8): each connects its fleet, runs its measured window
//! with a progress bar, and returns a `Report`. Each scenario is one file under
//! `scenario/` (its arguments and its run); this file holds what they share: the common
//! options, the run context and the delivery accounting.

mod churn;
mod fanout;
mod handshake;
mod idle;
mod resume;
mod revocation;
mod server_publish;

pub use churn::{ChurnArgs, churn};
pub use fanout::{FanoutArgs, fanout};
pub use handshake::{HandshakeArgs, handshake};
pub use idle::{IdleArgs, idle};
pub use resume::{ResumeArgs, resume};
pub use revocation::{RevocationArgs, revocation};
pub use server_publish::{ServerPublishArgs, server_publish};

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;

use crate::clock::{now_s, now_us};
use crate::fleet::Fleet;
use crate::procmon::{Mark, Monitor};
use crate::pubs::{self, PubPlan, PubStats};
use crate::report::{
    Churn, ConnStats, Delivery, Handshake, Report, Resources, Resume, Revocation, ServerPublish, Tick, mib,
};
use crate::shard::{Cycle, Mode, ShardJob, ShardResult, Snap};
use crate::sio::Endpoint;
use crate::stats::{Pcts, Sharded};
use crate::token::Minter;

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// What is under test, as it appears in reports: `switchboard`, `node`, ...
    #[arg(long, default_value = "switchboard")]
    pub target: String,
    /// Socket.IO URL with the tenant namespace, e.g. http://127.0.0.1:4000/demo. Repeat
    /// for several edges: connections are spread round-robin.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// The tenant's HS256 secret (its UTF-8 bytes are the key). Repeat it once per --url
    /// when the endpoints are independent nodes with keys of their own.
    #[arg(long = "secret", env = "LOADTEST_SECRET", hide_env_values = true, required = true)]
    pub secrets: Vec<String>,
    /// Token header `kid`; empty for none.
    #[arg(long, default_value = "demo-hs256")]
    pub kid: String,
    /// PIDs of the server processes to sample CPU and RSS of (repeatable).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the main latency distribution as SVG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Groups comparable runs in reports (default: the scenario name).
    #[arg(long)]
    pub label: Option<String>,
    /// Generator processes; 0: one per --conns-per-proc connections.
    #[arg(long, default_value_t = 0)]
    pub procs: u64,
    /// Connections per generator process when --procs is 0 (a process may open 20,000 files).
    #[arg(long, default_value_t = 15_000)]
    pub conns_per_proc: u64,
    /// Connections per source address 127.0.0.x once a run exceeds it (ephemeral ports).
    #[arg(long, default_value_t = 10_000)]
    pub conns_per_ip: u64,
    /// Handshakes in flight at once (over all processes).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds one handshake (or subscription) may take.
    #[arg(long, default_value_t = 15.0)]
    pub timeout: f64,
    /// Seconds to wait for every connection to be made before starting anyway.
    #[arg(long, default_value_t = 300.0)]
    pub ready_timeout: f64,
    /// Admin API base, e.g. http://127.0.0.1:4001/v1 (revocations, --raise-limits).
    /// Repeatable: --raise-limits patches every one (independent `switchboard dev` nodes);
    /// revocations go to the first.
    #[arg(long = "admin-url")]
    pub admin_urls: Vec<String>,
    #[arg(long, env = "LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Before the run, raise the tenant's max_connections (and per-user limit) through the
    /// admin API so that the tenant policy is not what is measured.
    #[arg(long)]
    pub raise_limits: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

struct Ctx {
    c: Common,
    scenario: &'static str,
    monitor: Monitor,
    started: u64,
    tenant: String,
    endpoints: Vec<Endpoint>,
    run_id: String,
}

impl Ctx {
    async fn new(c: Common, scenario: &'static str) -> anyhow::Result<Self> {
        let endpoints = c.urls.iter().map(|u| Endpoint::parse(u)).collect::<anyhow::Result<Vec<_>>>()?;
        let tenant = endpoints[0].tenant().to_string();
        let monitor = Monitor::start(c.server_pids.clone(), Duration::from_millis(250));
        let run_id = format!("{:x}", now_us() % 0xff_ffff_ffff);
        let ctx = Ctx { c, scenario, monitor, started: now_s(), tenant, endpoints, run_id };
        if ctx.c.raise_limits {
            ctx.raise_limits().await;
        }
        Ok(ctx)
    }

    fn say(&self, msg: &str) {
        eprintln!("[{} {}] {msg}", self.scenario, self.c.target);
    }

    fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        if self.c.no_progress || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        {
            pb.set_style(style);
        }
        pb.set_prefix(what.to_string());
        pb
    }

    fn minters(&self) -> anyhow::Result<Vec<Minter>> {
        crate::shard::minters(
            &self.c.secrets,
            Some(self.c.kid.as_str()).filter(|k| !k.is_empty()),
            &self.tenant,
            self.endpoints.len(),
        )
    }

    fn job(&self, mode: Mode, conns: u64, sub_prefix: String) -> ShardJob {
        ShardJob {
            mode,
            urls: self.c.urls.clone(),
            secrets: self.c.secrets.clone(),
            kid: Some(self.c.kid.clone()).filter(|k| !k.is_empty()),
            sub_prefix,
            start: 0,
            count: conns,
            total: conns,
            rooms: 0,
            room_prefix: format!("lt-{}-", self.run_id),
            rooms_per_conn: 1,
            track_seq: false,
            concurrency: self.c.concurrency,
            conns_per_ip: self.c.conns_per_ip,
            ticket: false,
            timeout_ms: (self.c.timeout * 1000.0) as u64,
            hold: true,
            cycle: None,
        }
    }

    fn procs(&self, conns: u64) -> u64 {
        if self.c.procs > 0 { self.c.procs } else { conns.div_ceil(self.c.conns_per_proc.max(1)).max(1) }
    }

    async fn launch(
        &self,
        mut job: ShardJob,
        session_end_tx: Option<mpsc::UnboundedSender<(u64, u64, String)>>,
    ) -> anyhow::Result<Fleet> {
        let procs = if session_end_tx.is_some() { 1 } else { self.procs(job.count) };
        job.concurrency = (job.concurrency as u64).div_ceil(procs).max(1) as usize;
        Fleet::launch(job, procs, &self.monitor, session_end_tx).await
    }

    /// Waits until every connection has been tried, showing progress.
    async fn wait_ready(&self, fleet: &Fleet, planned: u64) -> Snap {
        self.say(&format!("connecting {planned} over {} process(es)", fleet.procs));
        let pb = self.bar(planned, "connecting");
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(self.c.ready_timeout);
        let snap = loop {
            let s = fleet.snap();
            pb.set_position(s.done);
            pb.set_message(format!("ok {} failed {}", s.connected, s.failed));
            if s.ready {
                break s;
            }
            if tokio::time::Instant::now() > deadline {
                self.say("not every connection was made in --ready-timeout; going on");
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        pb.finish_and_clear();
        self.say(&format!("{} connected, {} failed", snap.connected, snap.failed));
        snap
    }

    /// Sleeps `secs` with a progress bar showing `what` from the fleet.
    async fn hold(&self, fleet: &Fleet, secs: f64, what: &str) {
        self.hold_recording(fleet, secs, what, None).await
    }

    /// [`Ctx::hold`], adding a [`Tick`] to `timeline` every 250 ms.
    async fn hold_recording(
        &self,
        fleet: &Fleet,
        secs: f64,
        what: &str,
        mut timeline: Option<(&mut Vec<Tick>, &PubStats)>,
    ) {
        let pb = self.bar((secs * 10.0) as u64, what);
        let start = tokio::time::Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        while tokio::time::Instant::now() < end {
            let s = fleet.snap();
            if let Some((tl, stats)) = timeline.as_mut() {
                record_tick(tl, &s, stats);
            }
            pb.set_position((start.elapsed().as_secs_f64() * 10.0) as u64);
            pb.set_message(format!("conns {} deliveries {}", s.connected, s.delivered));
            tokio::time::sleep(Duration::from_millis(100).min(end - tokio::time::Instant::now())).await;
        }
        pb.finish_and_clear();
    }

    async fn raise_limits(&self) {
        let Some(token) = self.c.admin_token.as_ref().filter(|_| !self.c.admin_urls.is_empty()) else {
            self.say("--raise-limits needs --admin-url and --admin-token; skipped");
            return;
        };
        let body = json!({"policy": {"max_connections": 1_000_000, "max_connections_per_user": 1000}});
        for url in &self.c.admin_urls {
            let r = reqwest::Client::new()
                .patch(format!("{}/tenants/{}", url.trim_end_matches('/'), self.tenant))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => self.say(&format!("raised the tenant's limits at {url}")),
                Ok(r) => self.say(&format!("raising limits at {url}: HTTP {} (ignored)", r.status())),
                Err(e) => self.say(&format!("raising limits at {url}: {e} (ignored)")),
            }
        }
    }

    fn base(&self, params: serde_json::Value, res: &ShardResult, planned: u64, procs: usize) -> Report {
        Report {
            scenario: self.scenario.to_string(),
            target: self.c.target.clone(),
            label: self.c.label.clone().unwrap_or_else(|| self.scenario.to_string()),
            started_at_unix: self.started,
            generator: format!("loadtest {}", env!("CARGO_PKG_VERSION")),
            params,
            conns: ConnStats {
                planned,
                connected: res.connected,
                failed: res.failed,
                failures: res.failures.clone(),
                dropped: res.dropped,
                session_ends: res.session_ends.clone(),
                generator_processes: procs,
            },
            ..Report::default()
        }
    }

    fn resources(&self, r: &mut Report, from: &Mark, to: &Mark, per_conn: Option<(&Mark, u64)>) {
        let per = |a: u64, b: u64, n: u64| (n > 0).then(|| (b as f64 - a as f64) / n as f64);
        if self.monitor.has_server() {
            r.server = Some(Resources {
                usage: self.monitor.server_usage(from, to),
                rss_per_conn_bytes: per_conn.and_then(|(base, n)| per(base.server.rss, to.server.rss, n)),
            });
        }
        r.generator_usage = Resources {
            usage: self.monitor.generator_usage(from, to),
            rss_per_conn_bytes: per_conn.and_then(|(base, n)| per(base.generator.rss, to.generator.rss, n)),
        };
        r.window_s = to.server.t_us.saturating_sub(from.server.t_us) as f64 / 1e6;
    }

    fn pub_plan(
        &self,
        publishers: u64,
        rate: f64,
        rooms: u64,
        size: usize,
        prefix: &str,
    ) -> anyhow::Result<PubPlan> {
        let publishers = if publishers > 0 { publishers } else { (rate / 40.0).ceil().max(1.0) as u64 };
        Ok(PubPlan {
            endpoints: self.endpoints.clone(),
            minters: self.minters()?,
            sub_prefix: format!("lt-{}-pub-", self.run_id),
            publishers,
            rate,
            rooms: rooms.max(1),
            room_prefix: prefix.to_string(),
            payload_bytes: size,
            event: crate::shard::EVENT.into(),
            timeout: Duration::from_secs_f64(self.c.timeout),
            id_base: 0,
        })
    }

    /// Connects the publishers and publishes for `secs`, showing progress; returns the
    /// window's start mark.
    async fn publish(
        &self,
        fleet: &Fleet,
        plan: PubPlan,
        secs: f64,
    ) -> anyhow::Result<(Arc<PubStats>, Mark, tokio::task::JoinSet<()>)> {
        let conns = pubs::connect(&plan).await?;
        let stats = PubStats::new(plan.rooms);
        let plan = Arc::new(plan);
        let m0 = self.monitor.mark();
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs_f64(secs);
        let mut set = tokio::task::JoinSet::new();
        for (k, c) in conns.into_iter().enumerate() {
            set.spawn(pubs::run(k as u64, c, plan.clone(), stats.clone(), start, end));
        }
        self.say(&format!(
            "publishing {:.0} msg/s for {secs} s from {} publisher(s)",
            plan.rate, plan.publishers
        ));
        self.hold(fleet, secs, "publishing").await;
        Ok((stats, m0, set))
    }

    /// Waits for the deliveries still owed (or `secs`).
    async fn drain(&self, fleet: &Fleet, stats: &PubStats, room_receivers: &[u64], secs: f64) {
        self.drain_recording(fleet, stats, room_receivers, secs, None).await
    }

    async fn drain_recording(
        &self,
        fleet: &Fleet,
        stats: &PubStats,
        room_receivers: &[u64],
        secs: f64,
        mut timeline: Option<&mut Vec<Tick>>,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        while tokio::time::Instant::now() < deadline {
            if let Some(tl) = timeline.as_mut() {
                record_tick(tl, &fleet.snap(), stats);
            }
            let expected: u64 = stats
                .room_acked
                .iter()
                .zip(room_receivers)
                .map(|(a, n)| a.load(std::sync::atomic::Ordering::Relaxed) * n)
                .sum();
            if fleet.snap().unique >= expected {
                // Give stragglers (duplicates) a moment.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn finish(&self, mut r: Report) -> anyhow::Result<Report> {
        r.label = self.c.label.clone().unwrap_or(r.label);
        println!("{}", r.table());
        if let Some(p) = &self.c.json {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(p, serde_json::to_string_pretty(&r)?).with_context(|| format!("writing {p:?}"))?;
            eprintln!("wrote {}", p.display());
        }
        if let Some(p) = &self.c.plot {
            crate::plot::reports(p, std::slice::from_ref(&r))?;
            eprintln!("wrote {}", p.display());
        }
        Ok(r)
    }
}

/// Appends a tick if 250 ms passed since the last one.
fn record_tick(tl: &mut Vec<Tick>, s: &Snap, stats: &PubStats) {
    let t_ms = now_us() / 1000;
    if tl.last().is_some_and(|l| t_ms < l.t_ms + 250) {
        return;
    }
    tl.push(Tick {
        t_ms,
        delivered: s.delivered,
        acked: stats.acked.load(std::sync::atomic::Ordering::Relaxed),
        sent: stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        connected: s.connected,
    });
}

/// Message by message: acknowledged publishes that some receiver never got (lost), and
/// deliveries of publishes whose publisher was told they failed. `None` without the
/// receivers' sequence records.
pub fn ledger_loss(res: &ShardResult, ps: &pubs::PubResult) -> Option<(u64, u64)> {
    ledger_loss_by(res, ps).map(|(l, r, _)| (l, r))
}

/// [`ledger_loss`], with the losses of each publisher (`room/publisher` → lost).
pub fn ledger_loss_by(res: &ShardResult, ps: &pubs::PubResult) -> Option<(u64, u64, BTreeMap<String, u64>)> {
    if res.seen.is_empty() && res.room_unique.iter().all(|u| *u == 0) {
        return None;
    }
    let mut lost = 0u64;
    let mut refused_delivered = 0u64;
    let mut by = BTreeMap::new();
    for (&(room, publisher), (sent, acked)) in &ps.ledger {
        let receivers = res.room_receivers.get(room as usize).copied().unwrap_or(0);
        let seen: Vec<_> = res.seen.iter().filter(|x| x.room == room && x.publisher == publisher).collect();
        let tracked: u64 = seen.iter().map(|x| x.subscribers).sum();
        let untracked = receivers.saturating_sub(tracked);
        let acked: std::collections::HashSet<u64> = acked.iter().copied().collect();
        for s in 0..*sent {
            let missing = untracked
                + seen
                    .iter()
                    .filter(|x| s >= x.high || x.holes.binary_search(&s).is_ok())
                    .map(|x| x.subscribers)
                    .sum::<u64>();
            if acked.contains(&s) {
                lost += missing;
                if missing > 0 {
                    *by.entry(format!("{room}/{publisher}")).or_insert(0) += missing;
                }
            } else {
                refused_delivered += receivers.saturating_sub(missing);
            }
        }
    }
    Some((lost, refused_delivered, by))
}

fn delivery(res: &ShardResult, ps: &pubs::PubResult, publishers: u64, window_s: f64, loss: bool) -> Delivery {
    let expected: u64 = ps.room_acked.iter().zip(&res.room_receivers).map(|(a, n)| a * n).sum();
    let received: u64 = res.room_unique.iter().sum();
    let exact = if loss { ledger_loss_by(res, ps) } else { None };
    let lost = exact.as_ref().map_or(expected.saturating_sub(received), |(l, _, _)| *l);
    Delivery {
        publishers,
        published: ps.sent,
        acked: ps.acked,
        publish_errors: ps.errors.clone(),
        loss_applicable: loss,
        expected: if loss { expected } else { 0 },
        received: if loss { received } else { 0 },
        delivered: res.delivered,
        lost: if loss { lost } else { 0 },
        loss_ratio: if loss && expected > 0 { lost as f64 / expected as f64 } else { 0.0 },
        refused_delivered: exact.as_ref().map_or(0, |(_, r, _)| *r),
        lost_exact: exact.is_some(),
        lost_by_publisher: exact.map(|(_, _, by)| by).unwrap_or_default(),
        duplicates: res.dups,
        reordered: res.reorders,
        throughput_per_s: if window_s > 0.0 { res.delivered as f64 / window_s } else { 0.0 },
        latency_us: Pcts::of(&res.delivery.hist()),
        ack_latency_us: Pcts::of(&ps.ack.hist()),
    }
}
