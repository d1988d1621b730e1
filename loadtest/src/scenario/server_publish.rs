//! The `server_publish` scenario: server publish through the admin API.

use super::*;

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
