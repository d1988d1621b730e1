//! The `idle` scenario: idle sockets, memory per connection.

use super::*;

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
