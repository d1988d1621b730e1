//! A store that can be switched off: a [`MemoryStore`] that answers
//! `Unavailable` while `down` is set, for tests of what callers do when the store is down.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use policy::{KeyRecord, Revocation};
use serde_json::Value;

use crate::{
    ApiKeyRecord, ConnRecord, Member, MemoryStore, PresenceChange, SessionRecord, Stats, StatsDelta, Store,
    StoreError, Tenant, TicketGrant,
};

/// A store that answers `Unavailable` while `down`.
#[derive(Default)]
pub struct Flaky {
    pub inner: MemoryStore,
    pub down: AtomicBool,
}

impl Flaky {
    /// Switches the store off (`true`) or on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> crate::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Flaky {
    async fn ping(&self) -> crate::Result<()> {
        self.check()
    }
    async fn create_tenant(&self, t: Tenant) -> crate::Result<()> {
        self.check()?;
        self.inner.create_tenant(t).await
    }
    async fn get_tenant(&self, id: &str) -> crate::Result<Option<Tenant>> {
        self.check()?;
        self.inner.get_tenant(id).await
    }
    async fn list_tenants(&self) -> crate::Result<Vec<Tenant>> {
        self.check()?;
        self.inner.list_tenants().await
    }
    async fn update_tenant(&self, t: Tenant) -> crate::Result<()> {
        self.check()?;
        self.inner.update_tenant(t).await
    }
    async fn delete_tenant(&self, id: &str) -> crate::Result<bool> {
        self.check()?;
        self.inner.delete_tenant(id).await
    }
    async fn add_key(&self, tenant: &str, key: KeyRecord) -> crate::Result<()> {
        self.check()?;
        self.inner.add_key(tenant, key).await
    }
    async fn list_keys(&self, tenant: &str) -> crate::Result<Vec<KeyRecord>> {
        self.check()?;
        self.inner.list_keys(tenant).await
    }
    async fn delete_key(&self, tenant: &str, kid: &str) -> crate::Result<bool> {
        self.check()?;
        self.inner.delete_key(tenant, kid).await
    }
    async fn add_api_key(&self, tenant: &str, key: ApiKeyRecord) -> crate::Result<()> {
        self.check()?;
        self.inner.add_api_key(tenant, key).await
    }
    async fn list_api_keys(&self, tenant: &str) -> crate::Result<Vec<ApiKeyRecord>> {
        self.check()?;
        self.inner.list_api_keys(tenant).await
    }
    async fn find_api_key(&self, hash: &str) -> crate::Result<Option<(String, ApiKeyRecord)>> {
        self.check()?;
        self.inner.find_api_key(hash).await
    }
    async fn delete_api_key(&self, tenant: &str, id: &str) -> crate::Result<bool> {
        self.check()?;
        self.inner.delete_api_key(tenant, id).await
    }
    async fn put_ticket(
        &self,
        tenant: &str,
        ticket: &str,
        grant: TicketGrant,
        ttl: u64,
    ) -> crate::Result<()> {
        self.check()?;
        self.inner.put_ticket(tenant, ticket, grant, ttl).await
    }
    async fn take_ticket(&self, tenant: &str, ticket: &str) -> crate::Result<Option<TicketGrant>> {
        self.check()?;
        self.inner.take_ticket(tenant, ticket).await
    }
    async fn add_revocation(&self, tenant: &str, r: Revocation) -> crate::Result<()> {
        self.check()?;
        self.inner.add_revocation(tenant, r).await
    }
    async fn list_revocations(&self, tenant: &str) -> crate::Result<Vec<Revocation>> {
        self.check()?;
        self.inner.list_revocations(tenant).await
    }
    async fn delete_revocation(&self, tenant: &str, id: &str) -> crate::Result<bool> {
        self.check()?;
        self.inner.delete_revocation(tenant, id).await
    }
    async fn open_connection(
        &self,
        tenant: &str,
        c: ConnRecord,
        max: u64,
        per_user: u32,
    ) -> crate::Result<bool> {
        self.check()?;
        self.inner.open_connection(tenant, c, max, per_user).await
    }
    async fn close_connection(&self, tenant: &str, conn_id: &str) -> crate::Result<()> {
        self.check()?;
        self.inner.close_connection(tenant, conn_id).await
    }
    async fn list_connections(&self, tenant: &str, sub: Option<&str>) -> crate::Result<Vec<ConnRecord>> {
        self.check()?;
        self.inner.list_connections(tenant, sub).await
    }
    async fn presence_join(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
        meta: Option<Value>,
    ) -> crate::Result<PresenceChange> {
        self.check()?;
        self.inner.presence_join(tenant, room, sub, conn_id, meta).await
    }
    async fn presence_leave(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
    ) -> crate::Result<PresenceChange> {
        self.check()?;
        self.inner.presence_leave(tenant, room, sub, conn_id).await
    }
    async fn presence(&self, tenant: &str, room: &str) -> crate::Result<Vec<Member>> {
        self.check()?;
        self.inner.presence(tenant, room).await
    }
    async fn rooms(&self, tenant: &str) -> crate::Result<Vec<(String, u64)>> {
        self.check()?;
        self.inner.rooms(tenant).await
    }
    async fn room_subscribe(&self, tenant: &str, room: &str, conn_id: &str) -> crate::Result<()> {
        self.check()?;
        self.inner.room_subscribe(tenant, room, conn_id).await
    }
    async fn room_unsubscribe(&self, tenant: &str, room: &str, conn_id: &str) -> crate::Result<()> {
        self.check()?;
        self.inner.room_unsubscribe(tenant, room, conn_id).await
    }
    async fn add_stats(&self, tenant: &str, d: StatsDelta) -> crate::Result<()> {
        self.check()?;
        self.inner.add_stats(tenant, d).await
    }
    async fn stats(&self, tenant: &str) -> crate::Result<Stats> {
        self.check()?;
        self.inner.stats(tenant).await
    }
    async fn put_session(&self, tenant: &str, s: SessionRecord, ttl_seconds: u64) -> crate::Result<()> {
        self.check()?;
        self.inner.put_session(tenant, s, ttl_seconds).await
    }
    async fn get_session(&self, tenant: &str, id: &str) -> crate::Result<Option<SessionRecord>> {
        self.check()?;
        self.inner.get_session(tenant, id).await
    }
}
