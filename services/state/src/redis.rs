//! The Redis store: what every node of a cluster shares, on Redis 7+ (standalone or Redis
//! Cluster), through `fred`.
//!
//! Every key of a tenant starts with `sb:{t:<tenant>}:` — the braces are a hash tag, so a
//! tenant's keys share one cluster slot and each operation is one Lua script (or one
//! command) on one node: atomic, nothing half-written. Two global keys index what must be
//! found without knowing the tenant: `sb:tenants` (tenant ids) and `sb:apikeys` (API key
//! hash → tenant and key id). The tenant's own keys are the truth; the global entries are
//! hints written before and cleaned after, and every read through them is checked against
//! the tenant's keys, so an interrupted write never shows.
//!
//! Connections, presence and room subscriptions are owned by the node that wrote them. A
//! node proves it is alive per tenant with `sb:{t:<tenant>}:alive:<node>` (TTL
//! [`RedisOptions::liveness_ttl`], refreshed every [`RedisOptions::heartbeat_interval`] by a
//! background task). Every script that reads or counts those records first removes the
//! records of nodes whose key has expired, so a node killed without a goodbye loses its
//! members within one liveness TTL. The layout is documented in ARCHITECTURE.md.
//!
//! Any Redis failure is [`StoreError::Unavailable`]; commands time out after
//! [`RedisOptions::command_timeout`], and the client reconnects by itself.
//!
//! This file is the [`Store`] implementation; `options` (connection and liveness
//! settings), `lua` (the scripts, as `.lua` files), `scripts` (their loaded form),
//! `codec` (values and keys) and `liveness` (the heartbeat) are its parts.

mod codec;
mod liveness;
mod lua;
mod options;
mod scripts;

use codec::{
    IndexEntry, change, corrupt, from_json, int, is_missing, ms, pairs, prefix, records, strings, to_json,
    unavailable,
};
use liveness::heartbeat_loop;
pub use options::RedisOptions;
use scripts::{Lua, Scripts};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use parking_lot::Mutex;
use policy::Revocation;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{
    ApiKeyRecord, ConnRecord, Member, PresenceChange, Stats, StatsDelta, Tenant, TicketGrant,
};
use crate::{HookEvent, KeyRecord, Result, SessionRecord, Store, StoreError, hash_secret};

/// The global set of tenant ids.
const TENANTS_KEY: &str = "sb:tenants";
/// The global API key index: hash of the key → `{"tenant", "id"}`.
const API_KEYS_KEY: &str = "sb:apikeys";
/// The global set of tenants whose webhooks are on.
const HOOK_TENANTS_KEY: &str = "sb:hooks";
/// How long a node holds a tenant's webhook outbox after its last take (at most the
/// liveness TTL).
const HOOKS_LEASE_MS: u64 = 5_000;
/// Longest ticket or session life accepted, so that expiry arithmetic stays exact in Lua.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

struct Inner {
    pool: Pool,
    opts: RedisOptions,
    scripts: Scripts,
    /// Tenants in which this node owns records, so the heartbeat must keep its liveness
    /// key there fresh; each with the sequence number of the last write that registered
    /// records in it.
    active: Mutex<HashMap<String, u64>>,
    seq: AtomicU64,
    lapses: watch::Sender<u64>,
}

/// The Redis [`Store`]. Cheap to share behind an `Arc`; dropping it stops its heartbeat and
/// closes its connections without a goodbye (its records then expire like a crashed node's).
pub struct RedisStore {
    inner: Arc<Inner>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("node_id", &self.inner.opts.node_id).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects with the default [`RedisOptions`]; fails with `unavailable` when Redis does
    /// not answer within the command timeout. Starts the heartbeat task (needs a Tokio
    /// runtime).
    pub async fn connect(url: &str, node_id: &str) -> Result<RedisStore> {
        RedisStore::connect_with(url, RedisOptions::new(node_id)).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, opts: RedisOptions) -> Result<RedisStore> {
        opts.validate()?;
        // The URL may hold a password: it never goes into an error or a log line.
        let config = Config::from_url(url)
            .map_err(|_| {
                StoreError::Unavailable(
                    "invalid or unsupported redis url (redis://, redis-cluster://, redis-sentinel://; no TLS in this build)"
                        .into(),
                )
            })?;
        let timeout = opts.command_timeout;
        let mut builder = Builder::from_config(config);
        builder
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                // A command is written at most once: a script that ran but whose reply was
                // lost is not run again (a ticket is never taken twice, a counter never
                // counted twice); the caller sees `unavailable`.
                c.max_command_attempts = 1;
                c.unresponsive.max_timeout = Some(timeout.saturating_mul(2));
                c.unresponsive.interval = (timeout / 2).max(Duration::from_millis(50));
                c.tcp.nodelay = Some(true);
            })
            // Unlimited attempts, 50 ms doubling to 2 s between them.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        let pool = builder.build_pool(opts.pool_size).map_err(unavailable)?;
        match tokio::time::timeout(timeout, pool.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                return Err(unavailable(e));
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(StoreError::Unavailable("redis did not answer in time".into()));
            }
        }
        let inner = Arc::new(Inner {
            pool,
            opts,
            scripts: Scripts::new(),
            active: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            lapses: watch::channel(0).0,
        });
        let task = tokio::spawn(heartbeat_loop(Arc::clone(&inner)));
        Ok(RedisStore { inner, heartbeat: Mutex::new(Some(task)) })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.opts.node_id
    }

    /// How often this node refreshes its liveness.
    pub fn heartbeat_interval(&self) -> Duration {
        self.inner.opts.heartbeat_interval
    }

    /// How long this node's records outlive its last heartbeat.
    pub fn liveness_ttl(&self) -> Duration {
        self.inner.opts.liveness_ttl
    }

    /// Counts the times this node found its liveness expired in a tenant where it had
    /// records (Redis unreachable for longer than the liveness TTL): those records are gone
    /// or going, and the node should register its live connections again.
    pub fn lapses(&self) -> watch::Receiver<u64> {
        self.inner.lapses.subscribe()
    }

    /// Stops refreshing this node's liveness, as if the process had died: its records
    /// disappear from every read within the liveness TTL.
    pub fn stop_heartbeat(&self) {
        if let Some(task) = self.heartbeat.lock().take() {
            task.abort();
        }
    }

    /// A clean exit: stops the heartbeat and removes every connection, presence and
    /// subscription record this node owns, at once.
    pub async fn goodbye(&self) -> Result<()> {
        self.stop_heartbeat();
        let tenants: Vec<String> = self.inner.active.lock().drain().map(|(t, _)| t).collect();
        let mut first_error = None;
        for t in tenants {
            let node = self.inner.opts.node_id.clone();
            if let Err(e) = self.inner.run(&self.inner.scripts.goodbye, &t, vec![node]).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pool = self.inner.pool.clone();
            rt.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

impl Inner {
    /// Runs a tenant script: `KEYS[1]` is the tenant's record key, `ARGV[1]` its prefix.
    async fn run(&self, lua: &Lua, tenant: &str, args: Vec<String>) -> Result<Value> {
        let p = prefix(tenant);
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(p.clone());
        argv.extend(args);
        self.eval(lua, format!("{p}tenant"), argv).await
    }

    async fn eval(&self, lua: &Lua, key: String, args: Vec<String>) -> Result<Value> {
        let client = self.pool.next();
        let sha = lua.script.sha1().clone();
        match client.evalsha::<Value, _, _, _>(sha.clone(), key.clone(), args.clone()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                client.script_load_cluster::<(), _>(lua.source.clone()).await.map_err(unavailable)?;
                client.evalsha(sha, key, args).await.map_err(unavailable)
            }
            r => r.map_err(unavailable),
        }
    }

    fn node(&self) -> String {
        self.opts.node_id.clone()
    }

    fn ttl(&self) -> String {
        ms(self.opts.liveness_ttl)
    }

    /// Stores a record of `kind` (tickets, sessions) that expires after `ttl_seconds`.
    async fn put_expiring(
        &self,
        tenant: &str,
        kind: &str,
        id: String,
        value: String,
        ttl_seconds: u64,
    ) -> Result<()> {
        let ttl_ms = ttl_seconds.min(MAX_TTL_SECONDS) * 1000;
        let v = self
            .run(&self.scripts.put_expiring, tenant, vec![kind.into(), id, value, ttl_ms.to_string()])
            .await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// A record of `kind` that has not expired, removed when `take`.
    async fn get_expiring(&self, tenant: &str, kind: &str, id: String, take: bool) -> Result<Option<String>> {
        let take = if take { "1" } else { "0" };
        Ok(self
            .run(&self.scripts.get_expiring, tenant, vec![kind.into(), id, take.into()])
            .await?
            .into_string())
    }

    /// Turns the tenant's webhook outbox on or off to match its policy, and the global
    /// index of such tenants with it.
    async fn sync_hooks(&self, t: &Tenant) -> Result<()> {
        let on = t.policy.webhooks.is_some();
        if on {
            self.pool.sadd::<(), _, _>(HOOK_TENANTS_KEY, t.id.as_str()).await.map_err(unavailable)?;
        }
        self.run(&self.scripts.hooks_switch, &t.id, vec![if on { "1" } else { "0" }.into()]).await?;
        if !on {
            self.pool.srem::<(), _, _>(HOOK_TENANTS_KEY, t.id.as_str()).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Removes a global API key index entry if it still points at `(tenant, id)`.
    async fn unindex_api_key(&self, hash: &str, entry: &IndexEntry) -> Result<()> {
        let expected = to_json(entry)?;
        self.eval(&self.scripts.index_del_if, API_KEYS_KEY.into(), vec![hash.to_string(), expected]).await?;
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<()> {
        self.inner.pool.next().ping::<()>(None).await.map_err(unavailable)
    }

    fn lapses(&self) -> Option<watch::Receiver<u64>> {
        Some(RedisStore::lapses(self))
    }

    async fn create_tenant(&self, t: Tenant) -> Result<()> {
        let json = to_json(&t)?;
        let pool = &self.inner.pool;
        // The index first (a hint: ids without a record are skipped), the record, and the
        // index again, so a concurrent delete cannot leave a live tenant unindexed.
        pool.sadd::<(), _, _>(TENANTS_KEY, t.id.as_str()).await.map_err(unavailable)?;
        let set: Option<String> = pool
            .set(format!("{}tenant", prefix(&t.id)), json, None, Some(SetOptions::NX), false)
            .await
            .map_err(unavailable)?;
        if set.is_none() {
            return Err(StoreError::Conflict);
        }
        // The tenant exists and was indexed above; this only repairs a concurrent delete's
        // index cleanup, so its failure does not fail the create.
        if let Err(e) = pool.sadd::<(), _, _>(TENANTS_KEY, t.id.as_str()).await {
            tracing::warn!(error = %unavailable(e), "tenant index repair failed");
        }
        if t.policy.webhooks.is_some() {
            self.inner.sync_hooks(&t).await?;
        }
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let v: Option<String> =
            self.inner.pool.get(format!("{}tenant", prefix(id))).await.map_err(unavailable)?;
        v.map(|s| from_json(&s, "tenant")).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let ids: Vec<String> = self.inner.pool.smembers(TENANTS_KEY).await.map_err(unavailable)?;
        let found = futures_util::future::join_all(ids.iter().map(|id| self.get_tenant(id))).await;
        let mut v = Vec::with_capacity(ids.len());
        for t in found {
            v.extend(t?);
        }
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn update_tenant(&self, t: Tenant) -> Result<()> {
        let json = to_json(&t)?;
        let set: Option<String> = self
            .inner
            .pool
            .set(format!("{}tenant", prefix(&t.id)), json, None, Some(SetOptions::XX), false)
            .await
            .map_err(unavailable)?;
        set.ok_or(StoreError::NotFound)?;
        self.inner.sync_hooks(&t).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        let v = self.inner.run(&self.inner.scripts.delete_tenant, id, vec![]).await?;
        if is_missing(&v) {
            return Ok(false);
        }
        // The tenant is gone: the global entries below are leftovers that every reader
        // already ignores, so failing to clean them does not fail the delete.
        let keys: Vec<ApiKeyRecord> = records(v, "api key").unwrap_or_default();
        for k in keys {
            let entry = IndexEntry { tenant: id.to_string(), id: k.id };
            if let Err(e) = self.inner.unindex_api_key(&k.hash, &entry).await {
                tracing::warn!(error = %e, "api key index cleanup failed");
            }
        }
        let pool = &self.inner.pool;
        let cleanup = async {
            pool.srem::<(), _, _>(HOOK_TENANTS_KEY, id).await?;
            pool.srem::<(), _, _>(TENANTS_KEY, id).await?;
            // Re-created meanwhile? Then it belongs in the index.
            if pool.exists::<i64, _>(format!("{}tenant", prefix(id))).await? == 1 {
                pool.sadd::<(), _, _>(TENANTS_KEY, id).await?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = cleanup.await {
            tracing::warn!(error = %unavailable(e), "tenant index cleanup failed");
        }
        Ok(true)
    }

    async fn add_key(&self, tenant: &str, key: KeyRecord) -> Result<()> {
        let args = vec!["keys".into(), key.kid.clone(), to_json(&key)?];
        match int(&self.inner.run(&self.inner.scripts.hset_new, tenant, args).await?) {
            -1 => Err(StoreError::NotFound),
            0 => Err(StoreError::Conflict),
            _ => Ok(()),
        }
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        let v = self.inner.run(&self.inner.scripts.hvals, tenant, vec!["keys".into()]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let mut keys: Vec<KeyRecord> = records(v, "key")?;
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    async fn delete_key(&self, tenant: &str, kid: &str) -> Result<bool> {
        let v = self.inner.run(&self.inner.scripts.htake, tenant, vec!["keys".into(), kid.into()]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        Ok(!v.is_null())
    }

    async fn add_api_key(&self, tenant: &str, key: ApiKeyRecord) -> Result<()> {
        let entry = IndexEntry { tenant: tenant.to_string(), id: key.id.clone() };
        let entry_json = to_json(&entry)?;
        // The index entry first: until the record exists, lookups through it find nothing.
        self.inner
            .pool
            .hset::<(), _, _>(API_KEYS_KEY, (key.hash.as_str(), entry_json))
            .await
            .map_err(unavailable)?;
        let args = vec!["apikeys".into(), key.id.clone(), to_json(&key)?];
        let result = match int(&self.inner.run(&self.inner.scripts.hset_new, tenant, args).await?) {
            -1 => Err(StoreError::NotFound),
            0 => Err(StoreError::Conflict),
            _ => return Ok(()),
        };
        // Not added: drop the entry unless it is the existing record's own.
        let existing =
            self.inner.pool.hget::<Option<String>, _, _>(format!("{}apikeys", prefix(tenant)), &key.id).await;
        let keep = matches!(existing, Ok(Some(ref s)) if from_json::<ApiKeyRecord>(s, "api key").is_ok_and(|r| r.hash == key.hash));
        if !keep && let Err(e) = self.inner.unindex_api_key(&key.hash, &entry).await {
            tracing::warn!(error = %e, "api key index cleanup failed");
        }
        result
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        let v = self.inner.run(&self.inner.scripts.hvals, tenant, vec!["apikeys".into()]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let mut keys: Vec<ApiKeyRecord> = records(v, "api key")?;
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<(String, ApiKeyRecord)>> {
        let pool = &self.inner.pool;
        let Some(entry) = pool.hget::<Option<String>, _, _>(API_KEYS_KEY, hash).await.map_err(unavailable)?
        else {
            return Ok(None);
        };
        let entry: IndexEntry = from_json(&entry, "api key index entry")?;
        let rec: Option<String> =
            pool.hget(format!("{}apikeys", prefix(&entry.tenant)), &entry.id).await.map_err(unavailable)?;
        match rec.map(|s| from_json::<ApiKeyRecord>(&s, "api key")).transpose()? {
            Some(r) if r.hash == hash => Ok(Some((entry.tenant, r))),
            _ => Ok(None),
        }
    }

    async fn delete_api_key(&self, tenant: &str, id: &str) -> Result<bool> {
        let v = self.inner.run(&self.inner.scripts.htake, tenant, vec!["apikeys".into(), id.into()]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let Some(json) = v.into_string() else { return Ok(false) };
        if let Ok(rec) = from_json::<ApiKeyRecord>(&json, "api key") {
            let entry = IndexEntry { tenant: tenant.to_string(), id: id.to_string() };
            if let Err(e) = self.inner.unindex_api_key(&rec.hash, &entry).await {
                tracing::warn!(error = %e, "api key index cleanup failed");
            }
        }
        Ok(true)
    }

    async fn put_ticket(
        &self,
        tenant: &str,
        ticket: &str,
        grant: TicketGrant,
        ttl_seconds: u64,
    ) -> Result<()> {
        self.inner.put_expiring(tenant, "tickets", hash_secret(ticket), to_json(&grant)?, ttl_seconds).await
    }

    async fn take_ticket(&self, tenant: &str, ticket: &str) -> Result<Option<TicketGrant>> {
        let v = self.inner.get_expiring(tenant, "tickets", hash_secret(ticket), true).await?;
        v.map(|s| from_json(&s, "ticket")).transpose()
    }

    async fn add_revocation(&self, tenant: &str, r: Revocation) -> Result<()> {
        let args = vec![r.id.clone(), to_json(&r)?, r.expires_at.to_string()];
        let v = self.inner.run(&self.inner.scripts.add_revocation, tenant, args).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_revocations(&self, tenant: &str) -> Result<Vec<Revocation>> {
        let v = self.inner.run(&self.inner.scripts.list_revocations, tenant, vec![]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let mut list: Vec<Revocation> = records(v, "revocation")?;
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(list)
    }

    async fn delete_revocation(&self, tenant: &str, id: &str) -> Result<bool> {
        match int(&self.inner.run(&self.inner.scripts.delete_revocation, tenant, vec![id.into()]).await?) {
            -1 => Err(StoreError::NotFound),
            n => Ok(n > 0),
        }
    }

    async fn open_connection(
        &self,
        tenant: &str,
        c: ConnRecord,
        max_total: u64,
        max_per_user: u32,
    ) -> Result<bool> {
        let i = &self.inner;
        let args = vec![
            i.node(),
            i.ttl(),
            c.id.clone(),
            c.sub.clone(),
            to_json(&c)?,
            max_total.to_string(),
            max_per_user.to_string(),
        ];
        match int(&i.run(&i.scripts.open_connection, tenant, args).await?) {
            -1 => Err(StoreError::NotFound),
            0 => Ok(false),
            _ => {
                i.mark_alive(tenant);
                Ok(true)
            }
        }
    }

    async fn close_connection(&self, tenant: &str, conn_id: &str) -> Result<()> {
        self.inner.run(&self.inner.scripts.close_connection, tenant, vec![conn_id.into()]).await?;
        Ok(())
    }

    async fn list_connections(&self, tenant: &str, sub: Option<&str>) -> Result<Vec<ConnRecord>> {
        let v = self.inner.run(&self.inner.scripts.list_connections, tenant, vec![]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let mut list: Vec<ConnRecord> = records(v, "connection")?;
        list.retain(|c| sub.is_none_or(|s| c.sub == s));
        list.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then_with(|| a.id.cmp(&b.id)));
        Ok(list)
    }

    async fn presence_join(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
        meta: Option<serde_json::Value>,
    ) -> Result<PresenceChange> {
        let i = &self.inner;
        let (has_meta, meta) = match meta {
            Some(m) => ("1".to_string(), to_json(&m)?),
            None => ("0".to_string(), String::new()),
        };
        let args = vec![i.node(), i.ttl(), room.into(), sub.into(), conn_id.into(), has_meta, meta];
        let v = i.run(&i.scripts.presence_join, tenant, args).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        i.mark_alive(tenant);
        change(v)
    }

    async fn presence_leave(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
    ) -> Result<PresenceChange> {
        let args = vec![room.into(), sub.into(), conn_id.into()];
        change(self.inner.run(&self.inner.scripts.presence_leave, tenant, args).await?)
    }

    async fn presence(&self, tenant: &str, room: &str) -> Result<Vec<Member>> {
        let v = self.inner.run(&self.inner.scripts.presence, tenant, vec![room.into()]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let Value::Array(parts) = v else { return Err(corrupt("presence")) };
        let mut parts = parts.into_iter();
        let counts = pairs(parts.next().unwrap_or(Value::Null))?;
        let metas: HashMap<String, String> =
            pairs(parts.next().unwrap_or(Value::Null))?.into_iter().collect();
        let mut members = Vec::with_capacity(counts.len());
        for (sub, n) in counts {
            let meta = metas.get(&sub).map(|m| from_json(m, "presence meta")).transpose()?;
            members.push(Member { connections: n.parse().map_err(|_| corrupt("presence"))?, sub, meta });
        }
        members.sort_by(|a, b| a.sub.cmp(&b.sub));
        Ok(members)
    }

    async fn rooms(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        let v = self.inner.run(&self.inner.scripts.rooms, tenant, vec![]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let mut rooms = Vec::new();
        for (room, n) in pairs(v)? {
            let n: u64 = n.parse().map_err(|_| corrupt("room count"))?;
            if n > 0 {
                rooms.push((room, n));
            }
        }
        rooms.sort();
        Ok(rooms)
    }

    async fn room_subscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()> {
        let i = &self.inner;
        let args = vec![i.node(), i.ttl(), room.into(), conn_id.into()];
        if is_missing(&i.run(&i.scripts.room_subscribe, tenant, args).await?) {
            return Err(StoreError::NotFound);
        }
        i.mark_alive(tenant);
        Ok(())
    }

    async fn room_unsubscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()> {
        self.inner
            .run(&self.inner.scripts.room_unsubscribe, tenant, vec![room.into(), conn_id.into()])
            .await?;
        Ok(())
    }

    async fn add_stats(&self, tenant: &str, d: StatsDelta) -> Result<()> {
        if d == StatsDelta::default() {
            return Ok(());
        }
        let clamp = |n: u64| n.min(i64::MAX as u64).to_string();
        let args = vec![clamp(d.messages_in), clamp(d.messages_out), clamp(d.handshakes_refused)];
        self.inner.run(&self.inner.scripts.add_stats, tenant, args).await?;
        Ok(())
    }

    async fn stats(&self, tenant: &str) -> Result<Stats> {
        let v = self.inner.run(&self.inner.scripts.stats, tenant, vec![]).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        let n: Vec<u64> = strings(v)?
            .iter()
            .map(|s| s.parse::<u64>().map_err(|_| corrupt("stats")))
            .collect::<Result<_>>()?;
        let [connections, rooms, messages_in, messages_out, handshakes_refused] = n[..] else {
            return Err(corrupt("stats"));
        };
        Ok(Stats { connections, rooms, messages_in, messages_out, handshakes_refused })
    }

    async fn put_session(&self, tenant: &str, rec: SessionRecord, ttl_seconds: u64) -> Result<()> {
        self.inner.put_expiring(tenant, "sessions", rec.id.clone(), to_json(&rec)?, ttl_seconds).await
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>> {
        let v = self.inner.get_expiring(tenant, "sessions", id.to_string(), false).await?;
        v.map(|s| from_json(&s, "session")).transpose()
    }

    async fn hook_tenants(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.inner.pool.smembers(HOOK_TENANTS_KEY).await.map_err(unavailable)?;
        v.sort();
        Ok(v)
    }

    async fn take_hook_events(&self, tenant: &str, max: usize) -> Result<Vec<HookEvent>> {
        let i = &self.inner;
        // No longer than the liveness: a killed holder's tenant must not wait for its
        // lease longer than for its records to be reaped.
        let lease = HOOKS_LEASE_MS.min(i.opts.liveness_ttl.as_millis() as u64).max(1);
        let args = vec![i.node(), lease.to_string(), max.clamp(1, 10_000).to_string()];
        let v = i.run(&i.scripts.hooks_take, tenant, args).await?;
        if is_missing(&v) {
            return Err(StoreError::NotFound);
        }
        records(v, "webhook event")
    }

    async fn push_hook_event(
        &self,
        tenant: &str,
        name: &str,
        user: &str,
        conn_id: &str,
        code: &str,
    ) -> Result<()> {
        let args = vec![name.into(), String::new(), user.into(), conn_id.into(), code.into()];
        self.inner.run(&self.inner.scripts.hooks_push, tenant, args).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_cannot_escape_their_hash_tag() {
        assert_eq!(prefix("acme-1"), "sb:{t:acme-1}:");
        assert_eq!(prefix("a}b{c:d"), "sb:{t:a%7Db%7Bc%3Ad}:");
        assert_ne!(prefix("a:b"), prefix("a%3Ab"));
    }

    #[test]
    fn options_are_checked() {
        assert!(RedisOptions::new("n1").validate().is_ok());
        assert!(RedisOptions::new("").validate().is_err());
        assert!(RedisOptions::new("a\nb").validate().is_err());
        let mut o = RedisOptions::new("n1");
        o.heartbeat_interval = o.liveness_ttl;
        assert!(o.validate().is_err());
    }
}
