//! Fixtures shared by the edge's integration tests: a tenant with an HS256 key, tokens
//! for it, and serving an edge's router on a free port.

use std::net::SocketAddr;
use std::sync::Arc;

use state::{MemoryStore, Store, Tenant};

pub const TENANT: &str = "acme";
pub const KID: &str = "k1";
pub const SECRET: &str = "edge-test-secret-edge-test-secret";

/// An in-memory store holding the tenant and its HS256 key.
pub async fn store() -> Arc<dyn Store> {
    let store = MemoryStore::new();
    let tenant = Tenant { name: "Acme".into(), created_at: 0, ..state::testing::tenant(TENANT) };
    store.create_tenant(tenant).await.expect("tenant");
    let key = state::testing::hmac_key(KID, SECRET);
    store.add_key(TENANT, key).await.expect("key");
    Arc::new(store)
}

/// A client token for `sub` with every right on every room, valid for an hour.
pub fn token(sub: &str) -> String {
    state::testing::token(TENANT, sub, KID, SECRET).all_rights().sign()
}

/// Serves an edge's router on a free loopback port; returns the port.
pub async fn serve(router: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    port
}
