//! The `handshake` scenario: a handshake storm, N clients connecting as fast as the lanes allow.

use super::*;

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
