//! The `resume` scenario: resume after drops.

use super::*;

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
