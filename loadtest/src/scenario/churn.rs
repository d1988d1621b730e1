//! The `churn` scenario: connection churn.

use super::*;

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
