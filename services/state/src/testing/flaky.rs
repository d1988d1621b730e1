//! A store that can be switched off: any [`Store`] (by default a [`MemoryStore`]) that
//! answers `Unavailable` while `down` is set, or for the operations named with
//! [`Faulty::fail`], for tests of what callers do when the store is down. Every method
//! is forwarded from [`store_methods!`](crate::store_methods)'s list: none is written by
//! hand, and none can be forgotten.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use policy::{KeyRecord, Revocation};
use serde_json::Value;

use crate::{
    ApiKeyRecord, ConnRecord, HookEvent, Member, MemoryStore, PresenceChange, Result, SessionRecord, Stats,
    StatsDelta, Store, StoreError, Tenant, TicketGrant,
};

/// A store that answers `Unavailable` while `down`, or for the operations in `failing`.
#[derive(Default)]
pub struct Faulty<S = MemoryStore> {
    pub inner: S,
    pub down: AtomicBool,
    /// Operations (by method name) that fail even while the store is up.
    failing: Mutex<HashSet<&'static str>>,
}

/// The in-memory store that can be switched off.
pub type Flaky = Faulty<MemoryStore>;

impl<S: Store> Faulty<S> {
    pub fn new(inner: S) -> Faulty<S> {
        Faulty { inner, down: AtomicBool::new(false), failing: Mutex::default() }
    }

    /// Switches the store off (`true`) or on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes one operation (a `Store` method's name) fail (`true`) or work again.
    pub fn fail(&self, op: &'static str, failing: bool) {
        let mut f = self.failing.lock();
        if failing {
            f.insert(op);
        } else {
            f.remove(op);
        }
    }

    fn check(&self, op: &str) -> Result<()> {
        if self.down.load(Ordering::SeqCst) || self.failing.lock().contains(op) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

macro_rules! faulty {
    ($( $name:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty; )*) => {
        #[async_trait]
        impl<S: Store> Store for Faulty<S> {
            fn lapses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
                self.inner.lapses()
            }
            $(
                async fn $name(&self, $( $arg: $ty ),*) -> $ret {
                    self.check(stringify!($name))?;
                    self.inner.$name($( $arg ),*).await
                }
            )*
        }
    };
}

crate::store_methods!(faulty);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tenant;

    #[tokio::test]
    async fn fails_while_down_or_per_operation() {
        let s = Flaky::default();
        s.create_tenant(tenant("acme")).await.expect("up");
        s.set_down(true);
        assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(s.get_tenant("acme").await, Err(StoreError::Unavailable(_))));
        s.set_down(false);
        s.fail("get_tenant", true);
        assert!(matches!(s.get_tenant("acme").await, Err(StoreError::Unavailable(_))));
        assert_eq!(s.list_tenants().await.map(|v| v.len()), Ok(1));
        s.fail("get_tenant", false);
        assert!(s.get_tenant("acme").await.expect("up again").is_some());
    }
}
