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

/// Writes the forwarding impl from [`store_methods!`](crate::store_methods)'s list.
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

crate::store_methods!(traced);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::testing::tenant;

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
