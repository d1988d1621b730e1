//! The `fanout` scenario: room fan-out (`fanout`) and many rooms (`rooms`).

use super::*;

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
