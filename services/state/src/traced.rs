//! [`Traced`]: any [`Store`] with every call in a span (`store.<operation>`), which the
//! OpenTelemetry layer exports as a child of the handshake, event or admin request that
//! made it. Arguments are not recorded: they carry tickets, key secrets and user ids.

use std::sync::Arc;

use async_trait::async_trait;
use policy::{KeyRecord, Revocation};
use serde_json::Value;
use tracing::Instrument;

use crate::{
    ApiKeyRecord, ConnRecord, HookEvent, Member, PresenceChange, Result, SessionRecord, Stats, StatsDelta,
    Store, Tenant, TicketGrant,
};

/// A store whose calls run in spans named for the operation, with `db.system` and, on
/// failure, the error's SPEC code.
pub struct Traced {
    inner: Arc<dyn Store>,
    system: &'static str,
}

impl Traced {
    /// `system` is the backing store's name (`redis`, `memory`) for `db.system`.
    pub fn new(inner: Arc<dyn Store>, system: &'static str) -> Traced {
        Traced { inner, system }
    }

    async fn call<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        // Debug level: off (and nearly free) unless traces are exported or the log filter
        // asks for `state=debug`.
        let span = tracing::debug_span!(
            "store",
            otel.name = op,
            otel.kind = "client",
            db.system = self.system,
            error.code = tracing::field::Empty,
        );
        let r = f.instrument(span.clone()).await;
        if let Err(e) = &r {
            span.record("error.code", e.code());
        }
        r
    }
}

/// Writes the forwarding impl: one line per `Store` method.
macro_rules! traced {
    ($( $name:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty; )*) => {
        #[async_trait]
        impl Store for Traced {
            fn lapses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
                self.inner.lapses()
            }
            $(
                async fn $name(&self, $( $arg: $ty ),*) -> $ret {
                    self.call(concat!("store.", stringify!($name)), self.inner.$name($( $arg ),*)).await
                }
            )*
        }
    };
}

traced! {
    ping() -> Result<()>;
    create_tenant(t: Tenant) -> Result<()>;
    get_tenant(id: &str) -> Result<Option<Tenant>>;
    list_tenants() -> Result<Vec<Tenant>>;
    update_tenant(t: Tenant) -> Result<()>;
    delete_tenant(id: &str) -> Result<bool>;
    add_key(tenant: &str, key: KeyRecord) -> Result<()>;
    list_keys(tenant: &str) -> Result<Vec<KeyRecord>>;
    delete_key(tenant: &str, kid: &str) -> Result<bool>;
    add_api_key(tenant: &str, key: ApiKeyRecord) -> Result<()>;
    list_api_keys(tenant: &str) -> Result<Vec<ApiKeyRecord>>;
    find_api_key(hash: &str) -> Result<Option<(String, ApiKeyRecord)>>;
    delete_api_key(tenant: &str, id: &str) -> Result<bool>;
    put_ticket(tenant: &str, ticket: &str, grant: TicketGrant, ttl_seconds: u64) -> Result<()>;
    take_ticket(tenant: &str, ticket: &str) -> Result<Option<TicketGrant>>;
    add_revocation(tenant: &str, r: Revocation) -> Result<()>;
    list_revocations(tenant: &str) -> Result<Vec<Revocation>>;
    delete_revocation(tenant: &str, id: &str) -> Result<bool>;
    open_connection(tenant: &str, c: ConnRecord, max_total: u64, max_per_user: u32) -> Result<bool>;
    close_connection(tenant: &str, conn_id: &str) -> Result<()>;
    list_connections(tenant: &str, sub: Option<&str>) -> Result<Vec<ConnRecord>>;
    presence_join(tenant: &str, room: &str, sub: &str, conn_id: &str, meta: Option<Value>) -> Result<PresenceChange>;
    presence_leave(tenant: &str, room: &str, sub: &str, conn_id: &str) -> Result<PresenceChange>;
    presence(tenant: &str, room: &str) -> Result<Vec<Member>>;
    rooms(tenant: &str) -> Result<Vec<(String, u64)>>;
    room_subscribe(tenant: &str, room: &str, conn_id: &str) -> Result<()>;
    room_unsubscribe(tenant: &str, room: &str, conn_id: &str) -> Result<()>;
    add_stats(tenant: &str, d: StatsDelta) -> Result<()>;
    stats(tenant: &str) -> Result<Stats>;
    put_session(tenant: &str, s: SessionRecord, ttl_seconds: u64) -> Result<()>;
    get_session(tenant: &str, id: &str) -> Result<Option<SessionRecord>>;
    hook_tenants() -> Result<Vec<String>>;
    take_hook_events(tenant: &str, max: usize) -> Result<Vec<HookEvent>>;
    push_hook_event(tenant: &str, name: &str, user: &str, conn_id: &str, code: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn tenant(id: &str) -> Tenant {
        Tenant { id: id.into(), name: id.into(), policy: Default::default(), created_at: 1, managed_by: None }
    }

    #[tokio::test]
    async fn forwards_every_call_and_its_errors() {
        let s = Traced::new(Arc::new(MemoryStore::new()), "memory");
        s.ping().await.expect("ping");
        assert_eq!(s.get_tenant("nope").await, Ok(None));
        s.create_tenant(tenant("acme")).await.expect("created");
        assert_eq!(s.create_tenant(tenant("acme")).await, Err(crate::StoreError::Conflict));
        assert_eq!(s.list_tenants().await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn forwards_the_methods_the_trait_has_defaults_for() {
        // A method left out of `traced!` would silently answer with the trait's default.
        let mut t = tenant("acme");
        t.policy.webhooks = serde_json::from_value(serde_json::json!({
            "url": "https://example.com/hook",
            "secrets": ["s".repeat(32)],
            "events": ["session.ended"],
        }))
        .expect("a webhook config");
        let s = Traced::new(Arc::new(MemoryStore::new()), "memory");
        s.create_tenant(t).await.expect("created");
        s.push_hook_event("acme", "session.ended", "u", "c1", "kicked").await.expect("pushed");
        assert_eq!(s.take_hook_events("acme", 10).await.expect("taken").len(), 1);
    }
}
