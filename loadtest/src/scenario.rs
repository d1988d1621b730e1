//! The bundled scenarios (SPEC §8): each connects its fleet, runs its measured window
//! with a progress bar, and returns a `Report`.

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

#[derive(Debug, Clone, Args)]
pub struct HandshakeArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Get a ticket (POST /v1/tickets) first and connect with `auth: {ticket}`.
    #[arg(long)]
    pub ticket: bool,
    /// Close each connection right after its handshake instead of holding all of them.
    #[arg(long)]
    pub close: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Rooms; subscribers are spread over them (fanout: 1).
    #[arg(long, default_value_t = 1)]
    pub rooms: u64,
    #[arg(long, default_value_t = 1)]
    pub rooms_per_conn: u64,
    /// Messages per second over all publishers.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Publisher connections; 0: one per 40 msg/s (servers allow 50/s per connection).
    #[arg(long, default_value_t = 0)]
    pub publishers: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Approximate bytes of each message's data.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait for the last deliveries after publishing ends.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections alive at a time.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Mean lifetime of a connection in milliseconds (exponentially distributed).
    #[arg(long, default_value_t = 5000)]
    pub hold_ms: u64,
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// Messages per second published into the rooms meanwhile.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 500)]
    pub conns: u64,
    /// Mean time between drops of one connection, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub drop_ms: u64,
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

#[derive(Debug, Clone, Args)]
pub struct RevocationArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections, one user each.
    #[arg(long, default_value_t = 500)]
    pub conns: u64,
    /// Users to revoke (at most --conns).
    #[arg(long, default_value_t = 100)]
    pub revocations: u64,
    /// Revocations per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ServerPublishArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscribers of the one room.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Cap on admin publish requests per second over all lanes; default: as fast as the
    /// answers come, with --concurrency requests in flight.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 15.0)]
    pub duration: f64,
    /// Approximate bytes of each message's data.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait for the last deliveries after publishing ends.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Subscribers that lose their connection (a drain's `session_end`, a dead node)
    /// reconnect to the next --url with `auth.resume` (SPEC 3.7) and keep counting: with
    /// this, a rolling restart of the edges during the run must show zero loss.
    #[arg(long)]
    pub resume: bool,
    /// Also publish into the room through sockets at this total rate (messages per
    /// second), from publishers connected to the first --url.
    #[arg(long, default_value_t = 0.0)]
    pub edge_rate: f64,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Seconds to hold the connections once all are made.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
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

pub async fn handshake(a: HandshakeArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "handshake").await?;
    let mut job = ctx.job(Mode::Storm, a.conns, format!("lt-{}-hs-", ctx.run_id));
    job.ticket = a.ticket;
    job.hold = !a.close;
    let m0 = ctx.monitor.mark();
    let t0 = now_us();
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    ctx.wait_ready(&fleet, a.conns).await;
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(
        json!({"conns": a.conns, "ticket": a.ticket, "close": a.close, "concurrency": ctx.c.concurrency}),
        &res,
        a.conns,
        procs,
    );
    if a.ticket {
        r.label = "handshake-ticket".into();
    }
    let span = res.last_connect_us.saturating_sub(t0) as f64 / 1e6;
    r.handshake = Some(Handshake {
        count: res.connected,
        rate_per_s: if span > 0.0 { res.connected as f64 / span } else { 0.0 },
        latency_us: Pcts::of(&res.handshake.hist()),
        ticket_us: a.ticket.then(|| Pcts::of(&res.ticket.hist())),
    });
    ctx.resources(&mut r, &m0, &m1, None);
    ctx.finish(r)
}

pub async fn fanout(a: FanoutArgs, scenario: &'static str) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, scenario).await?;
    let mut job = ctx.job(Mode::Hold, a.conns, format!("lt-{}-sub-", ctx.run_id));
    job.rooms = a.rooms.max(1);
    job.rooms_per_conn = a.rooms_per_conn;
    job.track_seq = true;
    let prefix = job.room_prefix.clone();
    let planned: Vec<u64> = {
        let mut v = vec![0u64; job.rooms as usize];
        for i in 0..a.conns {
            for r in job.rooms_of(i) {
                v[r as usize] += 1;
            }
        }
        v
    };
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    ctx.wait_ready(&fleet, a.conns).await;
    let plan = ctx.pub_plan(a.publishers, a.rate, a.rooms, a.size, &prefix)?;
    let publishers = plan.publishers;
    let (stats, m0, mut set) = ctx.publish(&fleet, plan, a.duration).await?;
    while set.join_next().await.is_some() {}
    ctx.drain(&fleet, &stats, &planned, a.drain).await;
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(
        json!({"conns": a.conns, "rooms": a.rooms, "rooms_per_conn": a.rooms_per_conn, "rate": a.rate,
               "publishers": publishers, "duration_s": a.duration, "size": a.size}),
        &res,
        a.conns,
        procs,
    );
    ctx.resources(&mut r, &m0, &m1, None);
    r.delivery = Some(delivery(&res, &stats.result(), publishers, r.window_s, true));
    ctx.finish(r)
}

pub async fn churn(a: ChurnArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "churn").await?;
    let mut job = ctx.job(Mode::Cycle, a.conns, format!("lt-{}-ch-", ctx.run_id));
    job.rooms = a.rooms.max(1);
    job.cycle = Some(Cycle { mean_hold_ms: a.hold_ms, resume: false, abrupt: false });
    let prefix = job.room_prefix.clone();
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    ctx.wait_ready(&fleet, a.conns).await;
    let plan = ctx.pub_plan(0, a.rate, a.rooms, 100, &prefix)?;
    let publishers = plan.publishers;
    let s0 = fleet.snap();
    let (stats, m0, mut set) = ctx.publish(&fleet, plan, a.duration).await?;
    while set.join_next().await.is_some() {}
    let s1 = fleet.snap();
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(
        json!({"conns": a.conns, "hold_ms": a.hold_ms, "rooms": a.rooms, "rate": a.rate, "duration_s": a.duration}),
        &res,
        a.conns,
        procs,
    );
    ctx.resources(&mut r, &m0, &m1, None);
    let hs = s1.handshakes.saturating_sub(s0.handshakes);
    r.churn = Some(Churn {
        cycles: res.cycles,
        handshakes: hs,
        handshakes_per_s: if r.window_s > 0.0 { hs as f64 / r.window_s } else { 0.0 },
        latency_us: Pcts::of(&res.handshake.hist()),
    });
    r.delivery = Some(delivery(&res, &stats.result(), publishers, r.window_s, false));
    ctx.finish(r)
}

pub async fn resume(a: ResumeArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "resume").await?;
    let mut job = ctx.job(Mode::Cycle, a.conns, format!("lt-{}-rs-", ctx.run_id));
    job.rooms = 1;
    job.track_seq = true;
    job.cycle = Some(Cycle { mean_hold_ms: a.drop_ms, resume: true, abrupt: true });
    let prefix = job.room_prefix.clone();
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    let ready = ctx.wait_ready(&fleet, a.conns).await;
    let plan = ctx.pub_plan(0, a.rate, 1, 100, &prefix)?;
    let publishers = plan.publishers;
    let (stats, m0, mut set) = ctx.publish(&fleet, plan, a.duration).await?;
    while set.join_next().await.is_some() {}
    ctx.drain(&fleet, &stats, &[ready.subscribed], a.drain).await;
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(
        json!({"conns": a.conns, "drop_ms": a.drop_ms, "rate": a.rate, "duration_s": a.duration}),
        &res,
        a.conns,
        procs,
    );
    ctx.resources(&mut r, &m0, &m1, None);
    r.resume = Some(Resume {
        drops: res.cycles,
        resumes: res.resumes,
        recovered: res.recovered,
        recovered_ratio: if res.resumes > 0 { res.recovered as f64 / res.resumes as f64 } else { 0.0 },
    });
    r.delivery = Some(delivery(&res, &stats.result(), publishers, r.window_s, true));
    ctx.finish(r)
}

pub async fn revocation(a: RevocationArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "revocation").await?;
    let (Some(admin), Some(admin_token)) = (ctx.c.admin_urls.first().cloned(), ctx.c.admin_token.clone())
    else {
        anyhow::bail!("revocation needs --admin-url and --admin-token");
    };
    let n = a.revocations.min(a.conns);
    let sub_prefix = format!("lt-{}-rv-", ctx.run_id);
    let job = ctx.job(Mode::Hold, a.conns, sub_prefix.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fleet = ctx.launch(job, Some(tx)).await?;
    ctx.wait_ready(&fleet, a.conns).await;
    // Revocation by `sub` covers tokens issued up to now, in whole seconds: let the
    // connection tokens' `iat` fall strictly before the revocations.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m0 = ctx.monitor.mark();
    let http = reqwest::Client::new();
    let url = format!("{}/tenants/{}/revocations", admin.trim_end_matches('/'), ctx.tenant);
    let request_hist = Arc::new(Sharded::new(1));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut posted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let latency = Sharded::new(1);
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(0.01));
    let start = tokio::time::Instant::now();
    let pb = ctx.bar(n, "revoking");
    let mut requests = tokio::task::JoinSet::new();
    let on_event = |e: (u64, u64, String), posted: &BTreeMap<u64, u64>, seen: &mut BTreeMap<u64, u64>| {
        if e.2 == "token_revoked" && !seen.contains_key(&e.0) {
            seen.insert(e.0, e.1);
            if let Some(t) = posted.get(&e.0) {
                latency.record(0, e.1.saturating_sub(*t));
            }
        }
    };
    for i in 0..n {
        let at = start + interval.mul_f64(i as f64);
        loop {
            tokio::select! {
                Some(e) = rx.recv() => on_event(e, &posted, &mut seen),
                _ = tokio::time::sleep_until(at) => break,
            }
        }
        let t = now_us();
        posted.insert(i, t);
        let (http, url, token, sub) =
            (http.clone(), url.clone(), admin_token.clone(), format!("{sub_prefix}{i}"));
        let (h, errors) = (request_hist.clone(), errors.clone());
        requests.spawn(async move {
            let r = http.post(url).bearer_auth(token).json(&json!({"sub": sub})).send().await;
            match r {
                Ok(r) if r.status().is_success() => h.record(0, now_us() - t),
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        pb.set_position(i + 1);
        pb.set_message(format!("observed {}", seen.len()));
    }
    pb.finish_and_clear();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (seen.len() as u64) < n {
        tokio::select! {
            Some(e) = rx.recv() => on_event(e, &posted, &mut seen),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    while requests.join_next().await.is_some() {}
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    while let Ok(e) = rx.try_recv() {
        on_event(e, &posted, &mut seen);
    }
    let mut r = ctx.base(json!({"conns": a.conns, "revocations": n, "rate": a.rate}), &res, a.conns, 1);
    ctx.resources(&mut r, &m0, &m1, None);
    let observed = seen.keys().filter(|k| posted.contains_key(k)).count() as u64;
    r.revocation = Some(Revocation {
        requested: n,
        observed,
        missed: n - observed,
        request_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        latency_us: Pcts::of(&latency.merged()),
        request_us: Pcts::of(&request_hist.merged()),
    });
    ctx.finish(r)
}

/// N subscribers of one room; `--concurrency` lanes POST messages into it through the
/// admin API (`POST {admin}/tenants/{t}/rooms/{room}/messages`) for `--duration` seconds.
pub async fn server_publish(a: ServerPublishArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "server-publish").await?;
    let (Some(admin), Some(admin_token)) = (ctx.c.admin_urls.first().cloned(), ctx.c.admin_token.clone())
    else {
        anyhow::bail!("server-publish needs --admin-url and --admin-token");
    };
    let mode = if a.resume { Mode::Cycle } else { Mode::Hold };
    let mut job = ctx.job(mode, a.conns, format!("lt-{}-sub-", ctx.run_id));
    job.rooms = 1;
    job.track_seq = true;
    if a.resume {
        // Never drop by themselves (a zero mean hold): only the servers end connections.
        job.cycle = Some(Cycle { mean_hold_ms: 0, resume: true, abrupt: true });
    }
    let room_prefix = job.room_prefix.clone();
    let room = format!("{room_prefix}0");
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    let ready = ctx.wait_ready(&fleet, a.conns).await;
    let lanes = ctx.c.concurrency.max(1) as u64;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(lanes as usize)
        .timeout(Duration::from_secs_f64(ctx.c.timeout))
        .build()?;
    let plan = Arc::new(pubs::HttpPlan {
        http,
        url: format!("{}/tenants/{}/rooms/{room}/messages", admin.trim_end_matches('/'), ctx.tenant),
        token: admin_token,
        event: crate::shard::EVENT.into(),
        lanes,
        rate: a.rate.filter(|r| *r > 0.0),
        payload_bytes: a.size,
    });
    let stats = PubStats::new(1);
    // Socket publishers into the same room, numbered after the lanes.
    let edge_pubs = if a.edge_rate > 0.0 {
        let mut plan = ctx.pub_plan(0, a.edge_rate, 1, a.size, &room_prefix)?;
        plan.endpoints.truncate(1);
        plan.minters.truncate(1);
        plan.id_base = lanes;
        let conns = pubs::connect(&plan).await?;
        Some((Arc::new(plan), conns))
    } else {
        None
    };
    let m0 = ctx.monitor.mark();
    let s0 = fleet.snap();
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(a.duration);
    let mut set = tokio::task::JoinSet::new();
    for k in 0..lanes {
        set.spawn(pubs::run_http(k, plan.clone(), stats.clone(), start, end));
    }
    if let Some((p, conns)) = edge_pubs {
        for (k, c) in conns.into_iter().enumerate() {
            set.spawn(pubs::run(k as u64, c, p.clone(), stats.clone(), start, end));
        }
        ctx.say(&format!("and through sockets at {} msg/s", a.edge_rate));
    }
    ctx.say(&format!(
        "publishing through {} with {lanes} request(s) in flight{} for {} s",
        plan.url,
        plan.rate.map(|r| format!(", at most {r}/s")).unwrap_or_default(),
        a.duration
    ));
    let mut timeline = Vec::new();
    ctx.hold_recording(&fleet, a.duration, "publishing", Some((&mut timeline, &stats))).await;
    while set.join_next().await.is_some() {}
    let span_s = start.elapsed().as_secs_f64();
    let s1 = fleet.snap();
    ctx.drain_recording(&fleet, &stats, &[ready.subscribed], a.drain, Some(&mut timeline)).await;
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(
        json!({"conns": a.conns, "concurrency": lanes, "rate": a.rate, "duration_s": a.duration, "size": a.size, "resume": a.resume, "edge_rate": a.edge_rate}),
        &res,
        a.conns,
        procs,
    );
    ctx.resources(&mut r, &m0, &m1, None);
    let ps = stats.result();
    let per_s = |n: u64| if span_s > 0.0 { n as f64 / span_s } else { 0.0 };
    r.server_publish = Some(ServerPublish {
        lanes,
        rate_cap: plan.rate,
        requests: ps.sent,
        accepted: ps.acked,
        errors: ps.errors.clone(),
        span_s,
        requests_per_s: per_s(ps.acked),
        deliveries_per_s: per_s(s1.delivered.saturating_sub(s0.delivered)),
        request_us: Pcts::of(&ps.ack.hist()),
    });
    if a.resume {
        r.resume = Some(Resume {
            drops: res.dropped,
            resumes: res.resumes,
            recovered: res.recovered,
            recovered_ratio: if res.resumes > 0 { res.recovered as f64 / res.resumes as f64 } else { 0.0 },
        });
    }
    r.delivery = Some(delivery(&res, &ps, lanes, r.window_s, true));
    r.timeline = timeline;
    ctx.finish(r)
}

pub async fn idle(a: IdleArgs) -> anyhow::Result<Report> {
    let ctx = Ctx::new(a.common, "idle").await?;
    let job = ctx.job(Mode::Hold, a.conns, format!("lt-{}-idle-", ctx.run_id));
    let base = ctx.monitor.mark();
    let fleet = ctx.launch(job, None).await?;
    let procs = fleet.procs;
    ctx.wait_ready(&fleet, a.conns).await;
    // Let allocators and timers settle before the window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = ctx.monitor.mark();
    ctx.hold(&fleet, a.duration, "holding").await;
    let m1 = ctx.monitor.mark();
    let res = fleet.stop().await?;
    let mut r = ctx.base(json!({"conns": a.conns, "duration_s": a.duration}), &res, a.conns, procs);
    ctx.resources(&mut r, &m0, &m1, Some((&base, res.connected)));
    if let Some(s) = &mut r.server {
        s.usage.rss_bytes_start = base.server.rss;
    }
    r.generator_usage.usage.rss_bytes_start = base.generator.rss;
    ctx.say(&format!(
        "server RSS {} before, {} holding {} connections",
        mib(base.server.rss),
        mib(m1.server.rss),
        res.connected
    ));
    ctx.finish(r)
}
