//! Serving one role: bind, run, and on SIGTERM/Ctrl-C drain and stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use bus::{AdapterState, Bus, LocalBus};
use policy::Secret;
use state::{MemoryStore, Store};
use telemetry::Metrics;
use tokio::net::TcpListener;

use crate::config::{AdminConfig, EdgeConfig, OperatorConfig};

/// The store, bus and Socket.IO adapter state a node uses: Redis and NATS when configured,
/// else in-memory state, local fan-out and the local adapter (one node). The adapter shares
/// the bus's NATS connection.
pub async fn backends(
    redis: Option<&Secret>,
    liveness: Duration,
    node_id: &str,
    nats: Option<bus::NatsConfig>,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Bus>, AdapterState)> {
    let store: Arc<dyn Store> = match redis {
        Some(url) => {
            let mut opts = state::RedisOptions::new(node_id);
            opts.liveness_ttl = liveness;
            // A third of the TTL: two heartbeats may be lost before the records lapse.
            opts.heartbeat_interval = liveness / 3;
            let s = state::RedisStore::connect_with(url.expose(), opts)
                .await
                .map_err(|e| anyhow::anyhow!("Redis (--redis-url): {e}"))?;
            tracing::info!("connected to Redis");
            Arc::new(state::Traced::new(Arc::new(s), "redis"))
        }
        None => Arc::new(state::Traced::new(Arc::new(MemoryStore::new()), "memory")),
    };
    let (bus, adapter): (Arc<dyn Bus>, AdapterState) = match nats {
        Some(cfg) => {
            let url = cfg.url.clone();
            let b = bus::NatsBus::connect(cfg).await.map_err(|e| anyhow::anyhow!("NATS at {url}: {e}"))?;
            tracing::info!(url, "connected to NATS");
            let adapter = b.adapter_state();
            (Arc::new(b), adapter)
        }
        None => (Arc::new(LocalBus::new()), AdapterState::local()),
    };
    Ok((store, bus, adapter))
}

/// Listens on `addr` with a deep accept queue: a handshake storm must not overflow it,
/// or clients wait a full SYN retransmission (1 s) to get in. The kernel caps the depth
/// at `net.core.somaxconn`.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let err = |e: std::io::Error| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}");
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(8192).map_err(err)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves `router` on `listener` until `stop` resolves, then gives open requests a
/// moment to finish.
pub async fn serve_until(
    listener: TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Small frames (acks, deliveries) must leave at once: without TCP_NODELAY, Nagle's
    // algorithm and delayed ACKs add ~40 ms to every handshake.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        });
    let handle = tokio::spawn(async move { server.await });
    stop.await;
    let _ = tx.send(());
    // Upgraded WebSockets are not tracked by graceful shutdown; the drain ended them.
    match tokio::time::timeout(Duration::from_secs(5), handle).await {
        Ok(Ok(r)) => r.map_err(Into::into),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Ok(()),
    }
}

pub async fn edge(cfg: EdgeConfig) -> anyhow::Result<()> {
    let (store, bus, adapter) =
        backends(cfg.redis_url.as_ref(), cfg.state_liveness, &cfg.edge.node_id, cfg.nats.clone()).await?;
    let metrics = Metrics::shared();
    let _otlp = telemetry::otlp_metrics::start(metrics.clone(), Some(&cfg.edge.node_id));
    let listener = bind(cfg.edge_addr, "the edge").await?;
    let (edge, router) = edge::Edge::new(cfg.edge.clone(), store, bus.clone(), adapter, metrics);
    tracing::info!(addr = %listener.local_addr()?, node = cfg.edge.node_id, "edge listening");
    let drain = cfg.drain;
    // The edge's background tasks run while a handle lives: this one lasts until the
    // server has shut down.
    let _running = edge.clone();
    serve_until(listener, router, async move {
        shutdown_signal().await;
        tracing::info!(?drain, "draining");
        edge.drain(drain).await;
        bus.leave().await;
    })
    .await
}

pub async fn admin(cfg: AdminConfig) -> anyhow::Result<()> {
    // The admin API speaks no Socket.IO: it needs no adapter.
    let (store, bus, _) =
        backends(cfg.redis_url.as_ref(), cfg.state_liveness, &cfg.node_id, cfg.nats.clone()).await?;
    let metrics = Metrics::shared();
    let _otlp = telemetry::otlp_metrics::start(metrics.clone(), Some(&cfg.node_id));
    let listener = bind(cfg.admin_addr, "the admin API").await?;
    let router = admin::router(admin::AdminState { store, bus, metrics, admin_token: cfg.admin_token });
    tracing::info!(addr = %listener.local_addr()?, node = cfg.node_id, "admin API listening");
    serve_until(listener, router, shutdown_signal()).await
}

pub async fn operator(cfg: OperatorConfig) -> anyhow::Result<()> {
    let (store, bus, _) =
        backends(cfg.redis_url.as_ref(), cfg.state_liveness, &cfg.node_id, cfg.nats.clone()).await?;
    let timings = operator::lease::LeaseTimings::default();
    let health = operator::health::Health::new(timings.lease);
    // The probes' listener first: a replica that cannot bind it fails at once, visibly.
    let listener = bind(cfg.health_addr, "the operator's health endpoints").await?;
    tracing::info!(addr = %listener.local_addr()?, "operator health endpoints listening");
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let health_server =
        tokio::spawn(serve_until(listener, operator::health::router(health.clone()), async {
            let _ = health_stopped.await;
        }));
    let opts = operator::Options {
        namespace: cfg.namespace,
        lease_name: cfg.lease_name,
        identity: cfg.node_id,
        timings,
        health,
    };
    let r = operator::run(opts, store, bus.clone(), shutdown_signal()).await;
    let _ = stop_health.send(());
    let _ = health_server.await;
    r?;
    bus.leave().await;
    Ok(())
}
