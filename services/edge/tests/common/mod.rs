//! Fixtures shared by the edge's integration tests: a tenant with an HS256 key, tokens
//! for it, and serving an edge's router on a free port.

use std::net::SocketAddr;
use std::sync::Arc;

use policy::{Algorithm, KeyMaterial, KeyRecord, Secret, TenantPolicy};
use serde_json::json;
use state::{MemoryStore, Store, Tenant};

pub const TENANT: &str = "acme";
pub const KID: &str = "k1";
pub const SECRET: &str = "edge-test-secret-edge-test-secret";

/// An in-memory store holding the tenant and its HS256 key.
pub async fn store() -> Arc<dyn Store> {
    let store = MemoryStore::new();
    let tenant = Tenant {
        id: TENANT.into(),
        name: "Acme".into(),
        policy: TenantPolicy::default(),
        created_at: 0,
        managed_by: None,
    };
    store.create_tenant(tenant).await.expect("tenant");
    let key = KeyRecord {
        kid: KID.into(),
        alg: Some("HS256".into()),
        material: KeyMaterial::Hmac { secret: Secret::new(SECRET) },
        created_at: 0,
    };
    store.add_key(TENANT, key).await.expect("key");
    Arc::new(store)
}

/// A client token for `sub` with every right on every room, valid for an hour.
pub fn token(sub: &str) -> String {
    let now = bus::now_ms() / 1000;
    let claims = json!({
        "aud": TENANT, "sub": sub, "iat": now, "exp": now + 3600,
        "caps": {"*": ["subscribe", "publish", "presence"]},
    });
    policy::mint_hmac(Algorithm::HS256, Some(KID), &Secret::new(SECRET), &claims).expect("token")
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
