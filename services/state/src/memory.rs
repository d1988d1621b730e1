//! The in-memory store: one process, no persistence. Every method takes one lock, so each
//! operation is atomic exactly as the trait promises.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use policy::{HookEvent, Revocation};

use crate::model::{
    ApiKeyRecord, ConnRecord, Member, PresenceChange, Stats, StatsDelta, Tenant, TicketGrant,
};
use crate::{KeyRecord, Result, Store, StoreError, hash_secret};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Default)]
struct RoomPresence {
    /// sub → (meta, connection ids)
    members: BTreeMap<String, (Option<serde_json::Value>, HashSet<String>)>,
}

#[derive(Default)]
struct TenantData {
    tenant: Option<Tenant>,
    keys: Vec<KeyRecord>,
    api_keys: Vec<ApiKeyRecord>,
    /// ticket hash → (grant, expires at ms)
    tickets: HashMap<String, (TicketGrant, i64)>,
    revocations: Vec<Revocation>,
    conns: HashMap<String, ConnRecord>,
    presence: HashMap<String, RoomPresence>,
    rooms: HashMap<String, HashSet<String>>,
    stats: StatsDelta,
    /// session id → (record, expires at ms)
    sessions: HashMap<String, (crate::SessionRecord, i64)>,
    /// The webhook outbox (see [`Store::take_hook_events`]) and its event counter.
    hooks: std::collections::VecDeque<HookEvent>,
    hook_seq: u64,
}

/// Longest webhook outbox of a tenant; past it the oldest events go.
const MAX_OUTBOX: usize = 10_000;

impl TenantData {
    /// Records a webhook event when the tenant's webhooks are on.
    fn hook(
        &mut self,
        name: &str,
        room: Option<&str>,
        user: Option<&str>,
        conn: Option<&str>,
        code: Option<&str>,
    ) {
        if self.tenant.as_ref().is_none_or(|t| t.policy.webhooks.is_none()) {
            return;
        }
        self.hook_seq += 1;
        let t = now_ms();
        if self.hooks.len() >= MAX_OUTBOX {
            self.hooks.pop_front();
        }
        self.hooks.push_back(HookEvent {
            id: format!("evt_{t:x}_{}", self.hook_seq),
            name: name.to_string(),
            time_ms: t,
            room: room.map(str::to_string),
            user: user.map(str::to_string),
            connection_id: conn.map(str::to_string),
            code: code.map(str::to_string),
        });
    }
}

/// The in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<HashMap<String, TenantData>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

fn existing<'a>(m: &'a mut HashMap<String, TenantData>, tenant: &str) -> Result<&'a mut TenantData> {
    m.get_mut(tenant).filter(|d| d.tenant.is_some()).ok_or(StoreError::NotFound)
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_tenant(&self, t: Tenant) -> Result<()> {
        let mut m = self.inner.lock();
        let d = m.entry(t.id.clone()).or_default();
        if d.tenant.is_some() {
            return Err(StoreError::Conflict);
        }
        *d = TenantData { tenant: Some(t), ..TenantData::default() };
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        Ok(self.inner.lock().get(id).and_then(|d| d.tenant.clone()))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let mut v: Vec<Tenant> = self.inner.lock().values().filter_map(|d| d.tenant.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn update_tenant(&self, t: Tenant) -> Result<()> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, &t.id)?;
        if t.policy.webhooks.is_none() {
            d.hooks.clear();
        }
        d.tenant = Some(t);
        Ok(())
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        Ok(self.inner.lock().remove(id).is_some_and(|d| d.tenant.is_some()))
    }

    async fn add_key(&self, tenant: &str, key: KeyRecord) -> Result<()> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        if d.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict);
        }
        d.keys.push(key);
        Ok(())
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        let mut m = self.inner.lock();
        Ok(existing(&mut m, tenant)?.keys.clone())
    }

    async fn delete_key(&self, tenant: &str, kid: &str) -> Result<bool> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let before = d.keys.len();
        d.keys.retain(|k| k.kid != kid);
        Ok(d.keys.len() != before)
    }

    async fn add_api_key(&self, tenant: &str, key: ApiKeyRecord) -> Result<()> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        if d.api_keys.iter().any(|k| k.id == key.id) {
            return Err(StoreError::Conflict);
        }
        d.api_keys.push(key);
        Ok(())
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        let mut m = self.inner.lock();
        Ok(existing(&mut m, tenant)?.api_keys.clone())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<(String, ApiKeyRecord)>> {
        let m = self.inner.lock();
        Ok(m.iter()
            .find_map(|(t, d)| d.api_keys.iter().find(|k| k.hash == hash).map(|k| (t.clone(), k.clone()))))
    }

    async fn delete_api_key(&self, tenant: &str, id: &str) -> Result<bool> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let before = d.api_keys.len();
        d.api_keys.retain(|k| k.id != id);
        Ok(d.api_keys.len() != before)
    }

    async fn put_ticket(
        &self,
        tenant: &str,
        ticket: &str,
        grant: TicketGrant,
        ttl_seconds: u64,
    ) -> Result<()> {
        let now = now_ms();
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        // Expired tickets are dropped as new ones arrive, so the map stays bounded by
        // the tickets issued within one TTL.
        d.tickets.retain(|_, (_, exp)| *exp > now);
        let exp = now.saturating_add(i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
        d.tickets.insert(hash_secret(ticket), (grant, exp));
        Ok(())
    }

    async fn take_ticket(&self, tenant: &str, ticket: &str) -> Result<Option<TicketGrant>> {
        let now = now_ms();
        let mut m = self.inner.lock();
        let Ok(d) = existing(&mut m, tenant) else { return Ok(None) };
        Ok(d.tickets.remove(&hash_secret(ticket)).filter(|(_, exp)| *exp > now).map(|(g, _)| g))
    }

    async fn add_revocation(&self, tenant: &str, r: Revocation) -> Result<()> {
        let now = now_ms() / 1000;
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        d.revocations.retain(|r| r.expires_at > now);
        d.revocations.push(r);
        Ok(())
    }

    async fn list_revocations(&self, tenant: &str) -> Result<Vec<Revocation>> {
        let now = now_ms() / 1000;
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        Ok(d.revocations.iter().filter(|r| r.expires_at > now).cloned().collect())
    }

    async fn delete_revocation(&self, tenant: &str, id: &str) -> Result<bool> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let before = d.revocations.len();
        d.revocations.retain(|r| r.id != id);
        Ok(d.revocations.len() != before)
    }

    async fn open_connection(
        &self,
        tenant: &str,
        c: ConnRecord,
        max_total: u64,
        max_per_user: u32,
    ) -> Result<bool> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let per_user = d.conns.values().filter(|x| x.sub == c.sub).count();
        if d.conns.len() as u64 >= max_total || per_user >= max_per_user as usize {
            return Ok(false);
        }
        d.hook("connection.opened", None, Some(&c.sub), Some(&c.id), None);
        d.conns.insert(c.id.clone(), c);
        Ok(true)
    }

    async fn close_connection(&self, tenant: &str, conn_id: &str) -> Result<()> {
        if let Some(d) = self.inner.lock().get_mut(tenant)
            && let Some(c) = d.conns.remove(conn_id)
        {
            d.hook("connection.closed", None, Some(&c.sub), Some(&c.id), None);
        }
        Ok(())
    }

    async fn list_connections(&self, tenant: &str, sub: Option<&str>) -> Result<Vec<ConnRecord>> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let mut v: Vec<ConnRecord> =
            d.conns.values().filter(|c| sub.is_none_or(|s| c.sub == s)).cloned().collect();
        v.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then_with(|| a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn presence_join(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
        meta: Option<serde_json::Value>,
    ) -> Result<PresenceChange> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let p = d.presence.entry(room.to_string()).or_default();
        let e = p.members.entry(sub.to_string()).or_insert_with(|| (meta.clone(), HashSet::new()));
        let first = e.1.is_empty();
        if meta.is_some() {
            e.0 = meta;
        }
        e.1.insert(conn_id.to_string());
        let members = p.members.len() as u64;
        if first {
            d.hook("presence.member_added", Some(room), Some(sub), Some(conn_id), None);
        }
        Ok(PresenceChange { user_changed: first, members })
    }

    async fn presence_leave(
        &self,
        tenant: &str,
        room: &str,
        sub: &str,
        conn_id: &str,
    ) -> Result<PresenceChange> {
        let mut m = self.inner.lock();
        let Some(d) = m.get_mut(tenant) else {
            return Ok(PresenceChange { user_changed: false, members: 0 });
        };
        let Some(p) = d.presence.get_mut(room) else {
            return Ok(PresenceChange { user_changed: false, members: 0 });
        };
        let mut last = false;
        if let Some(e) = p.members.get_mut(sub) {
            let removed = e.1.remove(conn_id);
            if removed && e.1.is_empty() {
                p.members.remove(sub);
                last = true;
            }
        }
        let members = p.members.len() as u64;
        if members == 0 {
            d.presence.remove(room);
        }
        if last {
            d.hook("presence.member_removed", Some(room), Some(sub), Some(conn_id), None);
        }
        Ok(PresenceChange { user_changed: last, members })
    }

    async fn presence(&self, tenant: &str, room: &str) -> Result<Vec<Member>> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        Ok(d.presence
            .get(room)
            .map(|p| {
                p.members
                    .iter()
                    .map(|(sub, (meta, c))| Member {
                        sub: sub.clone(),
                        meta: meta.clone(),
                        connections: c.len() as u32,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn rooms(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let mut v: Vec<(String, u64)> = d.rooms.iter().map(|(r, s)| (r.clone(), s.len() as u64)).collect();
        v.sort();
        Ok(v)
    }

    async fn room_subscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let subs = d.rooms.entry(room.to_string()).or_default();
        if subs.insert(conn_id.to_string()) && subs.len() == 1 {
            d.hook("room.occupied", Some(room), None, None, None);
        }
        Ok(())
    }

    async fn room_unsubscribe(&self, tenant: &str, room: &str, conn_id: &str) -> Result<()> {
        let mut m = self.inner.lock();
        if let Some(d) = m.get_mut(tenant)
            && let Some(s) = d.rooms.get_mut(room)
        {
            let removed = s.remove(conn_id);
            if s.is_empty() {
                d.rooms.remove(room);
                if removed {
                    d.hook("room.vacated", Some(room), None, None, None);
                }
            }
        }
        Ok(())
    }

    async fn add_stats(&self, tenant: &str, x: StatsDelta) -> Result<()> {
        if let Some(d) = self.inner.lock().get_mut(tenant) {
            d.stats.messages_in += x.messages_in;
            d.stats.messages_out += x.messages_out;
            d.stats.handshakes_refused += x.handshakes_refused;
        }
        Ok(())
    }

    async fn put_session(&self, tenant: &str, rec: crate::SessionRecord, ttl_seconds: u64) -> Result<()> {
        let now = now_ms();
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        d.sessions.retain(|_, (_, exp)| *exp > now);
        let exp = now.saturating_add(i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
        d.sessions.insert(rec.id.clone(), (rec, exp));
        Ok(())
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<crate::SessionRecord>> {
        let now = now_ms();
        let m = self.inner.lock();
        Ok(m.get(tenant)
            .and_then(|d| d.sessions.get(id))
            .filter(|(_, exp)| *exp > now)
            .map(|(r, _)| r.clone()))
    }

    async fn hook_tenants(&self) -> Result<Vec<String>> {
        let m = self.inner.lock();
        let mut v: Vec<String> = m
            .values()
            .filter_map(|d| d.tenant.as_ref())
            .filter(|t| t.policy.webhooks.is_some())
            .map(|t| t.id.clone())
            .collect();
        v.sort();
        Ok(v)
    }

    async fn take_hook_events(&self, tenant: &str, max: usize) -> Result<Vec<HookEvent>> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let n = max.min(d.hooks.len());
        Ok(d.hooks.drain(..n).collect())
    }

    async fn push_hook_event(
        &self,
        tenant: &str,
        name: &str,
        user: &str,
        conn_id: &str,
        code: &str,
    ) -> Result<()> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let (user, conn, code) = (some(user), some(conn_id), some(code));
        d.hook(name, None, user.as_deref(), conn.as_deref(), code.as_deref());
        Ok(())
    }

    async fn stats(&self, tenant: &str) -> Result<Stats> {
        let mut m = self.inner.lock();
        let d = existing(&mut m, tenant)?;
        Ok(Stats {
            connections: d.conns.len() as u64,
            rooms: d.rooms.len() as u64,
            messages_in: d.stats.messages_in,
            messages_out: d.stats.messages_out,
            handshakes_refused: d.stats.handshakes_refused,
        })
    }
}
