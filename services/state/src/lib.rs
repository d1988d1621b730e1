//! Store traits for what the cluster shares — tenants, keys, API keys, tickets,
//! revocations, connections, presence and stats — with an in-memory implementation.
//!
//! Edges keep no state that cannot be rebuilt from here (and the bus). The in-memory
//! store serves `switchboard dev` and a single node; a Redis implementation of the same
//! trait ([`RedisStore`]) makes any number of nodes one service. This crate decides
//! nothing: what a record means is `policy`'s business.

/// Calls `$then! { name(arg: Type, ...) -> Ret; ... }` with every async [`Store`] method:
/// the one list that wrappers ([`Traced`], `testing::Faulty`) forward, so that a method
/// added to the trait is forwarded by each of them or fails to compile (a method left
/// out would silently answer with the trait's default, if it has one).
#[macro_export]
#[doc(hidden)]
macro_rules! store_methods {
    ($then:ident) => {
        $then! {
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
    };
}

mod memory;
mod model;
mod redis;
mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod traced;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use model::{
    ApiKeyRecord, ConnRecord, Member, PresenceChange, Stats, StatsDelta, Tenant, TicketGrant, hash_secret,
    random_token,
};
pub use policy::{HookEvent, KeyRecord, Revocation};
pub use redis::{RedisOptions, RedisStore};
pub use session::SessionRecord;
pub use traced::Traced;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record exists already (create conflicts).
    #[error("already exists")]
    Conflict,
    /// The tenant (or parent record) does not exist.
    #[error("not found")]
    NotFound,
    /// The backing store cannot be reached; nothing was written.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The SPEC code this error surfaces as.
    pub fn kind(&self) -> policy::Code {
        match self {
            StoreError::Conflict => policy::Code::Conflict,
            StoreError::NotFound => policy::Code::NotFound,
            StoreError::Unavailable(_) => policy::Code::Unavailable,
        }
    }

    /// [`StoreError::kind`] as its string.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything the cluster shares. Every method is one atomic operation on the backing
/// store: a failure leaves nothing half-written.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the backing store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Ticks each time this node's records (connections, subscriptions, presence) were
    /// found expired because the store was unreachable for longer than their liveness:
    /// the node must write them again. `None` for stores whose records cannot lapse.
    fn lapses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    // Tenants.
    async fn create_tenant(&self, t: Tenant) -> Result<()>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    /// Replaces an existing tenant; `NotFound` when it does not exist.
    async fn update_tenant(&self, t: Tenant) -> Result<()>;
    /// Deletes the tenant and everything under it; false when it did not exist.
    async fn delete_tenant(&self, id: &str) -> Result<bool>;

    // Signing keys (verifying material).
    async fn add_key(&self, tenant: &str, key: KeyRecord) -> Result<()>;
    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>>;
    async fn delete_key(&self, tenant: &str, kid: &str) -> Result<bool>;

    // Tenant API keys, stored by the hash of the key.
    async fn add_api_key(&self, tenant: &str, key: ApiKeyRecord) -> Result<()>;
    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>>;
    /// The tenant and record whose key hashes to `hash`.
    async fn find_api_key(&self, hash: &str) -> Result<Option<(String, ApiKeyRecord)>>;
    async fn delete_api_key(&self, tenant: &str, id: &str) -> Result<bool>;

    // Tickets: single use, consumed atomically.
    async fn put_ticket(
        &self,
        tenant: &str,
        ticket: &str,
        grant: TicketGrant,
        ttl_seconds: u64,
    ) -> Result<()>;
    /// Takes the ticket if it exists and has not expired; no second caller ever gets it.
    async fn take_ticket(&self, tenant: &str, ticket: &str) -> Result<Option<TicketGrant>>;

    // Revocations.
    async fn add_revocation(&self, tenant: &str, r: Revocation) -> Result<()>;
    /// Unexpired revocations of the tenant.
    async fn list_revocations(&self, tenant: &str) -> Result<Vec<Revocation>>;
    async fn delete_revocation(&self, tenant: &str, id: &str) -> Result<bool>;

    // Connections, for limits, listings and kicks across nodes.
    /// Registers a connection unless it would exceed `max_total` for the tenant or
    /// `max_per_user` for its `sub`; returns whether it was registered.
    async fn open_connection(
        &self,
        tenant: &str,
        c: ConnRecord,
        max_total: u64,
        max_per_user: u32,
    ) -> Result<bool>;
    async fn close_connection(&self, tenant: &str, conn_id: &str) -> Result<()>;
    async fn list_connections(&self, tenant: &str, sub: Option<&str>) -> Result<Vec<ConnRecord>>;

    // Presence: members of a room, one entry per `sub` with its connection count.
    async fn presence_join(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
        meta: Option<serde_json::Value>,
    ) -> Result<PresenceChange>;
    async fn presence_leave(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
    ) -> Result<PresenceChange>;
    async fn presence(&self, tenant: &str, room: &str) -> Result<Vec<Member>>;
    /// Rooms of the tenant with at least one subscriber, and how many.
    async fn rooms(&self, tenant: &str) -> Result<Vec<(String, u64)>>;
    async fn room_subscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()>;
    async fn room_unsubscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()>;

    // Stats.
    async fn add_stats(&self, tenant: &str, d: StatsDelta) -> Result<()>;
    async fn stats(&self, tenant: &str) -> Result<Stats>;

    // Sessions, for resume on any node.
    /// Stores a session for `ttl_seconds` (replacing any with the same id).
    async fn put_session(&self, tenant: &str, s: SessionRecord, ttl_seconds: u64) -> Result<()>;
    /// The session, if it has not expired.
    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>>;

    // Webhook outbox. While a tenant's policy has `webhooks`, every transition the store
    // makes — a room's first subscriber and last leaving, a user's first connection joining
    // a room's presence and last leaving, connections opening and closing, a dead node's
    // records reaped — is recorded in the same atomic step, once, in order.
    /// Tenants whose webhooks are on.
    async fn hook_tenants(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Takes up to `max` recorded events of the tenant, oldest first. One node at a time
    /// gets a tenant's events (the others get none until it stops taking), so that they
    /// leave in order; taking also reaps dead nodes' records.
    async fn take_hook_events(&self, _tenant: &str, _max: usize) -> Result<Vec<HookEvent>> {
        Ok(Vec::new())
    }
    /// Records an event that is no store transition (`session.ended`, with its code).
    async fn push_hook_event(
        &self,
        _tenant: &str,
        _name: &str,
        _user: &str,
        _conn_id: &str,
        _code: &str,
    ) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
