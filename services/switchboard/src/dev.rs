//! `switchboard dev`: edge and admin API in one process, a `demo` tenant with an HS256
//! key, and everything a newcomer needs printed on stdout.

use std::io::Write;
use std::time::Duration;

use policy::{Algorithm, KeyMaterial, KeyRecord, Secret, TenantPolicy};
use state::{Tenant, random_token};
use telemetry::Metrics;

use crate::config::DevConfig;
use crate::serve::{backends, bind, serve_until, shutdown_signal};

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_KID: &str = "demo-hs256";

pub async fn run(cfg: DevConfig) -> anyhow::Result<()> {
    let (store, bus, adapter) =
        backends(cfg.redis_url.as_ref(), cfg.state_liveness, &cfg.edge.node_id, cfg.nats.clone()).await?;
    let metrics = Metrics::shared();
    let _otlp = telemetry::otlp_metrics::start(metrics.clone(), Some(&cfg.edge.node_id));
    let now = bus::now_ms() / 1000;

    let secret = demo_tenant(store.as_ref(), now).await?;
    let claims = serde_json::json!({
        "aud": DEMO_TENANT, "sub": "demo-user", "iat": now, "exp": now + 24 * 3600,
        "caps": {"*": ["subscribe", "publish", "presence"]},
    });
    let client_token = policy::mint_hmac(Algorithm::HS256, Some(DEMO_KID), &secret, &claims)
        .map_err(|e| anyhow::anyhow!("minting the demo token: {e}"))?;

    let edge_listener = bind(cfg.edge_addr, "the edge").await?;
    let admin_listener = bind(cfg.admin_addr, "the admin API").await?;
    let edge_addr = edge_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let (edge, edge_router) =
        edge::Edge::new(cfg.edge.clone(), store.clone(), bus.clone(), adapter, metrics.clone());
    let admin_router =
        admin::router(admin::AdminState { store, bus, metrics, admin_token: cfg.admin_token.clone() });

    // The banner is the interface for people and for scripts: one `name: value` per line.
    let banner = format!(
        "Switchboard dev is running (in-memory state, local fan-out).\n\
         socket.io: http://{edge_addr}/{DEMO_TENANT}\n\
         admin: http://{admin_addr}/v1\n\
         admin token: {}\n\
         demo key: kid={DEMO_KID} alg=HS256 secret={}\n\
         client token: {client_token}\n\
         Connect: io(\"http://{edge_addr}/{DEMO_TENANT}\", {{ auth: {{ token: \"<client token>\" }} }})\n",
        cfg.admin_token.expose(),
        secret.expose(),
    );
    let mut out = std::io::stdout().lock();
    out.write_all(banner.as_bytes())?;
    out.flush()?;
    drop(out);
    tracing::info!(%edge_addr, %admin_addr, node = cfg.edge.node_id, "dev ready");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx1 = stop_rx.clone();
    let mut rx2 = stop_rx;
    // The edge's background tasks run while a handle lives: this one lasts until both
    // servers have shut down.
    let _running = edge.clone();
    let edge_task = tokio::spawn(serve_until(edge_listener, edge_router, async move {
        let _ = rx1.wait_for(|s| *s).await;
        edge.drain(Duration::from_millis(200)).await;
    }));
    let admin_task = tokio::spawn(serve_until(admin_listener, admin_router, async move {
        let _ = rx2.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = edge_task.await;
    let _ = admin_task.await;
    Ok(())
}

/// Creates the `demo` tenant and its HS256 key, or — with a shared Redis that already has
/// them from an earlier run — reuses them, so that restarting `dev` keeps old tokens valid.
async fn demo_tenant(store: &dyn state::Store, now: i64) -> anyhow::Result<Secret> {
    let created = store
        .create_tenant(Tenant {
            id: DEMO_TENANT.into(),
            name: "Demo".into(),
            policy: TenantPolicy::default(),
            created_at: now,
            managed_by: None,
        })
        .await;
    match created {
        Ok(()) | Err(state::StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    let existing = store.list_keys(DEMO_TENANT).await?.into_iter().find_map(|k| match k.material {
        KeyMaterial::Hmac { secret } if k.kid == DEMO_KID => Some(secret),
        _ => None,
    });
    if let Some(secret) = existing {
        return Ok(secret);
    }
    let secret = Secret::new(random_token(32));
    let key = KeyRecord {
        kid: DEMO_KID.into(),
        alg: Some("HS256".into()),
        material: KeyMaterial::Hmac { secret: secret.clone() },
        created_at: now,
    };
    store.add_key(DEMO_TENANT, key).await?;
    Ok(secret)
}
