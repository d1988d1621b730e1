//! The generic store suite: every implementation of [`Store`] must pass it. The memory
//! store runs it in this crate's unit tests, the Redis store against a private
//! `redis-server` in `tests/redis.rs`.

use super::{grant, tenant};
use crate::*;
use policy::RevocationRule;

fn conn(id: &str, sub: &str) -> ConnRecord {
    super::conn(id, sub, "n1")
}

/// Runs the whole suite against `s`.
pub async fn suite(s: &dyn Store) {
    tenants(s).await;
    keys_and_api_keys(s).await;
    tickets(s).await;
    revocations(s).await;
    connections_and_presence(s).await;
}

async fn tenants(s: &dyn Store) {
    s.create_tenant(tenant("t1")).await.expect("create");
    assert_eq!(s.create_tenant(tenant("t1")).await, Err(StoreError::Conflict));
    assert_eq!(
        s.get_tenant("t1").await.expect("get"),
        Some(tenant("t1")),
        "the whole record, policy included"
    );
    assert_eq!(s.get_tenant("nope").await.expect("get"), None);
    let mut t = tenant("t1");
    t.name = "renamed".into();
    s.update_tenant(t).await.expect("update");
    assert_eq!(s.get_tenant("t1").await.expect("get").map(|t| t.name), Some("renamed".into()));
    assert_eq!(s.update_tenant(tenant("nope")).await, Err(StoreError::NotFound));
    assert!(s.list_tenants().await.expect("list").iter().any(|t| t.id == "t1"));
    assert!(s.delete_tenant("t1").await.expect("delete"));
    assert!(!s.delete_tenant("t1").await.expect("delete"));
    assert!(!s.list_tenants().await.expect("list").iter().any(|t| t.id == "t1"));
    assert_eq!(s.get_tenant("t1").await.expect("get"), None);
    assert_eq!(s.list_keys("t1").await, Err(StoreError::NotFound));
    // The owner mark survives a round trip, through create and update.
    let mut owned = tenant("t1o");
    owned.managed_by = Some("Tenant default/t1o".into());
    s.create_tenant(owned.clone()).await.expect("create owned");
    assert_eq!(s.get_tenant("t1o").await.expect("get"), Some(owned.clone()));
    owned.name = "renamed".into();
    s.update_tenant(owned.clone()).await.expect("update owned");
    assert_eq!(s.get_tenant("t1o").await.expect("get"), Some(owned));
    assert!(s.delete_tenant("t1o").await.expect("delete"));
}

async fn keys_and_api_keys(s: &dyn Store) {
    s.create_tenant(tenant("t2")).await.expect("create");
    let k = KeyRecord {
        kid: "k1".into(),
        alg: Some("HS256".into()),
        material: policy::KeyMaterial::Hmac { secret: policy::Secret::new("s") },
        created_at: 1,
    };
    s.add_key("t2", k.clone()).await.expect("add");
    assert_eq!(s.add_key("t2", k.clone()).await, Err(StoreError::Conflict));
    assert_eq!(s.list_keys("t2").await.expect("list"), vec![k]);
    assert!(s.delete_key("t2", "k1").await.expect("del"));
    assert!(s.list_keys("t2").await.expect("list").is_empty());

    let a = ApiKeyRecord { id: "a1".into(), name: "ci".into(), hash: hash_secret("key"), created_at: 1 };
    s.add_api_key("t2", a.clone()).await.expect("add");
    assert_eq!(s.find_api_key(&hash_secret("key")).await.expect("find"), Some(("t2".into(), a)));
    assert_eq!(s.find_api_key(&hash_secret("other")).await.expect("find"), None);
    assert!(s.delete_api_key("t2", "a1").await.expect("del"));
    assert_eq!(s.find_api_key(&hash_secret("key")).await.expect("find"), None);
    // Deleting a tenant removes its API keys.
    s.add_api_key(
        "t2",
        ApiKeyRecord { id: "a2".into(), name: "x".into(), hash: hash_secret("k2"), created_at: 1 },
    )
    .await
    .expect("add");
    s.delete_tenant("t2").await.expect("del");
    assert_eq!(s.find_api_key(&hash_secret("k2")).await.expect("find"), None);
}

async fn tickets(s: &dyn Store) {
    s.create_tenant(tenant("t3")).await.expect("create");
    s.put_ticket("t3", "tk", grant("u"), 30).await.expect("put");
    assert_eq!(s.take_ticket("t4", "tk").await.expect("take"), None, "another tenant's ticket");
    assert_eq!(s.take_ticket("t3", "tk").await.expect("take").map(|g| g.sub), Some("u".into()));
    assert_eq!(s.take_ticket("t3", "tk").await.expect("take"), None, "single use");
    s.put_ticket("t3", "gone", grant("u"), 0).await.expect("put");
    assert_eq!(s.take_ticket("t3", "gone").await.expect("take"), None, "expired");
    s.delete_tenant("t3").await.expect("del");
}

async fn revocations(s: &dyn Store) {
    s.create_tenant(tenant("t5")).await.expect("create");
    let r = Revocation::new("r1".into(), RevocationRule::Sub { sub: "u".into() }, 100, u64::MAX / 4);
    s.add_revocation("t5", r.clone()).await.expect("add");
    let old = Revocation {
        expires_at: 1,
        ..Revocation::new("r0".into(), RevocationRule::Jti { jti: "j".into() }, 0, 1)
    };
    s.add_revocation("t5", old).await.expect("add");
    assert_eq!(s.list_revocations("t5").await.expect("list"), vec![r]);
    assert!(s.delete_revocation("t5", "r1").await.expect("del"));
    assert!(s.list_revocations("t5").await.expect("list").is_empty());
    s.delete_tenant("t5").await.expect("del");
}

async fn connections_and_presence(s: &dyn Store) {
    s.create_tenant(tenant("t6")).await.expect("create");
    assert!(s.open_connection("t6", conn("c1", "u"), 3, 2).await.expect("open"));
    assert!(s.open_connection("t6", conn("c2", "u"), 3, 2).await.expect("open"));
    assert!(!s.open_connection("t6", conn("c3", "u"), 3, 2).await.expect("open"), "per-user limit");
    assert!(s.open_connection("t6", conn("c4", "v"), 3, 2).await.expect("open"));
    assert!(!s.open_connection("t6", conn("c5", "w"), 3, 2).await.expect("open"), "tenant limit");
    assert_eq!(s.list_connections("t6", Some("u")).await.expect("list").len(), 2);
    s.close_connection("t6", "c1").await.expect("close");
    assert_eq!(s.list_connections("t6", None).await.expect("list").len(), 2);

    let j = s.presence_join("t6", "room", "u", "c2", Some(serde_json::json!({"n": 1}))).await.expect("join");
    assert!(j.user_changed);
    let j = s.presence_join("t6", "room", "u", "c9", None).await.expect("join");
    assert!(!j.user_changed, "second connection of the same user");
    s.presence_join("t6", "room", "v", "c4", None).await.expect("join");
    let mut m = s.presence("t6", "room").await.expect("presence");
    m.sort_by(|a, b| a.sub.cmp(&b.sub));
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].connections, 2);
    assert_eq!(m[0].meta, Some(serde_json::json!({"n": 1})));
    assert!(!s.presence_leave("t6", "room", "u", "c2").await.expect("leave").user_changed);
    assert!(s.presence_leave("t6", "room", "u", "c9").await.expect("leave").user_changed);
    assert!(!s.presence_leave("t6", "room", "u", "c9").await.expect("leave").user_changed, "idempotent");

    s.room_subscribe("t6", "room", "c2").await.expect("sub");
    s.room_subscribe("t6", "room", "c4").await.expect("sub");
    s.room_subscribe("t6", "other", "c4").await.expect("sub");
    assert_eq!(s.rooms("t6").await.expect("rooms"), vec![("other".into(), 1), ("room".into(), 2)]);
    s.room_unsubscribe("t6", "other", "c4").await.expect("unsub");
    assert_eq!(s.rooms("t6").await.expect("rooms"), vec![("room".into(), 2)]);

    s.add_stats("t6", StatsDelta { messages_in: 2, messages_out: 5, handshakes_refused: 1 })
        .await
        .expect("stats");
    let st = s.stats("t6").await.expect("stats");
    assert_eq!(
        (st.connections, st.rooms, st.messages_in, st.messages_out, st.handshakes_refused),
        (2, 1, 2, 5, 1)
    );
    s.delete_tenant("t6").await.expect("del");
}
