//! The `revocation` scenario: revocation latency.

use super::*;

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
