//! The Lua scripts behind every multi-key operation of [`super::RedisStore`].
//!
//! Each script is [`PRELUDE`] followed by a body. Every script touches keys of exactly one
//! tenant: `KEYS[1]` is the tenant's record key (so a cluster routes the call to the slot of
//! the tenant's hash tag) and `ARGV[1]` is the tenant's key prefix `sb:{t:<tenant>}:`, from
//! which the script names the other keys of the same tenant. They all share the hash tag,
//! so they live in the same slot and Redis Cluster runs the script on one node.
//!
//! Liveness: a node that writes connection, presence or subscription records into a tenant
//! owns them; `alive:<node>` (a string with a TTL the node refreshes) says it is alive,
//! `owned:<node>` (a set of references) lists its records, and `nodes` lists the nodes that
//! own records. `reap()` runs first in every script that reads or counts those records: it
//! removes every record of a node whose `alive` key has expired, in the same atomic step.

/// Helpers shared by the scripts. `\0` separates the parts of composite values.
pub(super) const PRELUDE: &str = r#"
local P = ARGV[1]
local Z = '\0'

local function tenant_exists()
  return redis.call('EXISTS', KEYS[1]) == 1
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Webhook outbox: when the tenant's webhooks are on (`hooks:on`), a transition appends
-- its event to the `hooks` list in the same atomic step that made it, so the list holds
-- every tenant's transitions once, in the order they happened, whichever node caused them
-- (a reap included). Bounded: past 10000 the oldest go (counted in `hooks:dropped`).
local hooks_on = nil
local function hook(name, room, user, conn, code)
  if hooks_on == nil then hooks_on = redis.call('EXISTS', P .. 'hooks:on') == 1 end
  if not hooks_on then return end
  local seq = redis.call('INCR', P .. 'hooks:seq')
  local t = now_ms()
  local e = {id = string.format('evt_%x_%d', t, seq), name = name, time_ms = t}
  if room and room ~= '' then e.room = room end
  if user and user ~= '' then e.user = user end
  if conn and conn ~= '' then e.connection_id = conn end
  if code and code ~= '' then e.code = code end
  if redis.call('RPUSH', P .. 'hooks', cjson.encode(e)) > 10000 then
    redis.call('LPOP', P .. 'hooks')
    redis.call('INCR', P .. 'hooks:dropped')
  end
end

local function split(s)
  local i = string.find(s, Z, 1, true)
  if not i then return s, '' end
  return string.sub(s, 1, i - 1), string.sub(s, i + 1)
end

local function drop_conn(id, only_node)
  local own = redis.call('HGET', P .. 'conns:own', id)
  if not own then return false end
  local node, sub = split(own)
  if only_node and node ~= only_node then return false end
  redis.call('HDEL', P .. 'conns', id)
  redis.call('HDEL', P .. 'conns:own', id)
  if redis.call('HINCRBY', P .. 'conns:users', sub, -1) <= 0 then
    redis.call('HDEL', P .. 'conns:users', sub)
  end
  redis.call('SREM', P .. 'owned:' .. node, 'c' .. Z .. id)
  hook('connection.closed', nil, sub, id)
  return true
end

local function drop_presence(room, id, only_node)
  local kc = P .. 'pc:' .. room
  local own = redis.call('HGET', kc, id)
  if not own then return false end
  local node, sub = split(own)
  if only_node and node ~= only_node then return false end
  local ku, km = P .. 'pu:' .. room, P .. 'pm:' .. room
  redis.call('HDEL', kc, id)
  local last = false
  if redis.call('HINCRBY', ku, sub, -1) <= 0 then
    redis.call('HDEL', ku, sub)
    redis.call('HDEL', km, sub)
    last = true
    hook('presence.member_removed', room, sub, id)
  end
  redis.call('SREM', P .. 'owned:' .. node, 'p' .. Z .. id .. Z .. room)
  if redis.call('HLEN', ku) == 0 then
    redis.call('DEL', kc, ku, km)
    redis.call('SREM', P .. 'presence', room)
  end
  return last
end

local function drop_sub(room, id, only_node)
  local k = P .. 'sub:' .. room
  local node = redis.call('HGET', k, id)
  if not node then return false end
  if only_node and node ~= only_node then return false end
  redis.call('HDEL', k, id)
  if redis.call('HINCRBY', P .. 'rooms', room, -1) <= 0 then
    redis.call('HDEL', P .. 'rooms', room)
    redis.call('DEL', k)
    hook('room.vacated', room)
  end
  redis.call('SREM', P .. 'owned:' .. node, 's' .. Z .. id .. Z .. room)
  return true
end

local function purge(node)
  local ko = P .. 'owned:' .. node
  for _, ref in ipairs(redis.call('SMEMBERS', ko)) do
    local kind = string.sub(ref, 1, 1)
    local id, room = split(string.sub(ref, 3))
    if kind == 'c' then
      drop_conn(id, node)
    elseif kind == 'p' then
      drop_presence(room, id, node)
    elseif kind == 's' then
      drop_sub(room, id, node)
    end
  end
  redis.call('DEL', ko)
  redis.call('SREM', P .. 'nodes', node)
end

local function reap()
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'alive:' .. node) == 0 then purge(node) end
  end
end

local function ensure_alive(node, ttl)
  local ka = P .. 'alive:' .. node
  if redis.call('EXISTS', ka) == 0 then
    redis.call('SET', ka, '1', 'PX', ttl)
    redis.call('SADD', P .. 'nodes', node)
  end
end
"#;

/// ARGV: P. Deletes every key of the tenant; -1 when it does not exist, else the JSON of
/// its API key records (so the caller can drop them from the global index).
pub(super) const DELETE_TENANT: &str = r#"
if not tenant_exists() then return -1 end
local vals = redis.call('HVALS', P .. 'apikeys')
local keys = {KEYS[1]}
for _, s in ipairs({'keys', 'apikeys', 'tickets', 'tickets:exp', 'sessions', 'sessions:exp',
                    'revocations', 'revocations:exp',
                    'conns', 'conns:own', 'conns:users', 'rooms', 'presence', 'stats', 'nodes',
                    'hooks', 'hooks:on', 'hooks:seq', 'hooks:lease', 'hooks:dropped'}) do
  table.insert(keys, P .. s)
end
for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  table.insert(keys, P .. 'alive:' .. n)
  table.insert(keys, P .. 'owned:' .. n)
end
for _, r in ipairs(redis.call('SMEMBERS', P .. 'presence')) do
  table.insert(keys, P .. 'pc:' .. r)
  table.insert(keys, P .. 'pu:' .. r)
  table.insert(keys, P .. 'pm:' .. r)
end
for _, r in ipairs(redis.call('HKEYS', P .. 'rooms')) do
  table.insert(keys, P .. 'sub:' .. r)
end
for i = 1, #keys, 200 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 199, #keys)))
end
return vals
"#;

/// ARGV: P, suffix, field, value. HSETNX on an existing tenant: -1 not found, 0 conflict, 1 set.
pub(super) const HSET_NEW: &str = r#"
if not tenant_exists() then return -1 end
return redis.call('HSETNX', P .. ARGV[2], ARGV[3], ARGV[4])
"#;

/// ARGV: P, suffix. The values of a hash of an existing tenant; -1 when not found.
pub(super) const HVALS: &str = r#"
if not tenant_exists() then return -1 end
return redis.call('HVALS', P .. ARGV[2])
"#;

/// ARGV: P, suffix, field. Deletes a field of an existing tenant's hash: -1 not found, else
/// the deleted value or false.
pub(super) const HTAKE: &str = r#"
if not tenant_exists() then return -1 end
local v = redis.call('HGET', P .. ARGV[2], ARGV[3])
if v then redis.call('HDEL', P .. ARGV[2], ARGV[3]) end
return v
"#;

/// Records that expire one by one (tickets, sessions): `<kind>` is a hash id → value and
/// `<kind>:exp` a sorted set id → expiry (unix ms, Redis's clock). Both keys carry a TTL
/// covering their newest record, so an idle tenant's vanish by themselves.
///
/// ARGV: P, kind, id, value, ttl ms. -1 when the tenant does not exist.
pub(super) const PUT_EXPIRING: &str = r#"
if not tenant_exists() then return -1 end
local kh, ke = P .. ARGV[2], P .. ARGV[2] .. ':exp'
local now = now_ms()
for _, h in ipairs(redis.call('ZRANGEBYSCORE', ke, '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('HDEL', kh, h)
  redis.call('ZREM', ke, h)
end
local ttl = tonumber(ARGV[5])
redis.call('HSET', kh, ARGV[3], ARGV[4])
redis.call('ZADD', ke, now + ttl, ARGV[3])
local keep = ttl + 1000
if redis.call('PTTL', kh) < keep or redis.call('PTTL', ke) < keep then
  redis.call('PEXPIRE', kh, keep)
  redis.call('PEXPIRE', ke, keep)
end
return 1
"#;

/// ARGV: P, kind, id, take ('1' removes it). The value if it has not expired; an expired
/// record is removed.
pub(super) const GET_EXPIRING: &str = r#"
local kh, ke = P .. ARGV[2], P .. ARGV[2] .. ':exp'
local v = redis.call('HGET', kh, ARGV[3])
if not v then return false end
local live = tonumber(redis.call('ZSCORE', ke, ARGV[3]) or '0') > now_ms()
if ARGV[4] == '1' or not live then
  redis.call('HDEL', kh, ARGV[3])
  redis.call('ZREM', ke, ARGV[3])
end
if live then return v end
return false
"#;

/// Drops expired revocations; used by the revocation scripts.
const REVOCATIONS_CLEAN: &str = r#"
local kr, ke = P .. 'revocations', P .. 'revocations:exp'
local function clean()
  local now = tonumber(redis.call('TIME')[1])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ke, '-inf', now)) do
    redis.call('HDEL', kr, id)
  end
  redis.call('ZREMRANGEBYSCORE', ke, '-inf', now)
end
"#;

/// ARGV: P, id, JSON, expires_at (unix seconds). -1 when the tenant does not exist.
pub(super) fn add_revocation() -> String {
    format!(
        "{REVOCATIONS_CLEAN}{}",
        r#"
if not tenant_exists() then return -1 end
clean()
redis.call('HSET', kr, ARGV[2], ARGV[3])
redis.call('ZADD', ke, ARGV[4], ARGV[2])
local top = redis.call('ZRANGE', ke, -1, -1, 'WITHSCORES')
local last = tonumber(top[2] or '0')
if last < 1e11 then
  redis.call('EXPIREAT', kr, math.floor(last) + 1)
  redis.call('EXPIREAT', ke, math.floor(last) + 1)
else
  redis.call('PERSIST', kr)
  redis.call('PERSIST', ke)
end
return 1
"#
    )
}

/// ARGV: P. Unexpired revocations (JSON); -1 when the tenant does not exist.
pub(super) fn list_revocations() -> String {
    format!(
        "{REVOCATIONS_CLEAN}{}",
        r#"
if not tenant_exists() then return -1 end
clean()
return redis.call('HVALS', kr)
"#
    )
}

/// ARGV: P, id. -1 when the tenant does not exist, else how many were deleted.
pub(super) const DELETE_REVOCATION: &str = r#"
if not tenant_exists() then return -1 end
redis.call('ZREM', P .. 'revocations:exp', ARGV[2])
return redis.call('HDEL', P .. 'revocations', ARGV[2])
"#;

/// ARGV: P, node, ttl ms, conn id, sub, record JSON, max total, max per user.
/// -1 not found, 0 over a limit, 1 registered.
pub(super) const OPEN_CONNECTION: &str = r#"
if not tenant_exists() then return -1 end
reap()
local node, ttl, id, sub = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
drop_conn(id)
local total = redis.call('HLEN', P .. 'conns')
local mine = tonumber(redis.call('HGET', P .. 'conns:users', sub) or '0')
if total >= tonumber(ARGV[7]) or mine >= tonumber(ARGV[8]) then return 0 end
ensure_alive(node, ttl)
redis.call('HSET', P .. 'conns', id, ARGV[6])
redis.call('HSET', P .. 'conns:own', id, node .. Z .. sub)
redis.call('HINCRBY', P .. 'conns:users', sub, 1)
redis.call('SADD', P .. 'owned:' .. node, 'c' .. Z .. id)
hook('connection.opened', nil, sub, id)
return 1
"#;

/// ARGV: P, conn id.
pub(super) const CLOSE_CONNECTION: &str = r#"
drop_conn(ARGV[2])
return 1
"#;

/// ARGV: P. The live connection records (JSON); -1 when the tenant does not exist.
pub(super) const LIST_CONNECTIONS: &str = r#"
if not tenant_exists() then return -1 end
reap()
return redis.call('HVALS', P .. 'conns')
"#;

/// ARGV: P, node, ttl ms, room, sub, conn id, has meta ('1'/'0'), meta JSON.
/// -1 not found, else {first connection of the user (0/1), members}.
pub(super) const PRESENCE_JOIN: &str = r#"
if not tenant_exists() then return -1 end
reap()
local node, ttl, room, sub, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local kc, ku, km = P .. 'pc:' .. room, P .. 'pu:' .. room, P .. 'pm:' .. room
local first = 0
local own = redis.call('HGET', kc, id)
if own then
  local _, s = split(own)
  if s ~= sub then return {0, redis.call('HLEN', ku)} end
else
  ensure_alive(node, ttl)
  redis.call('HSET', kc, id, node .. Z .. sub)
  if redis.call('HINCRBY', ku, sub, 1) == 1 then
    first = 1
    hook('presence.member_added', room, sub, id)
  end
  redis.call('SADD', P .. 'owned:' .. node, 'p' .. Z .. id .. Z .. room)
  redis.call('SADD', P .. 'presence', room)
end
if ARGV[7] == '1' then redis.call('HSET', km, sub, ARGV[8]) end
return {first, redis.call('HLEN', ku)}
"#;

/// ARGV: P, room, sub, conn id. {last connection of the user left (0/1), members}.
pub(super) const PRESENCE_LEAVE: &str = r#"
local room, sub, id = ARGV[2], ARGV[3], ARGV[4]
local ku = P .. 'pu:' .. room
if not tenant_exists() then return {0, 0} end
reap()
local own = redis.call('HGET', P .. 'pc:' .. room, id)
local last = 0
if own then
  local _, s = split(own)
  if s == sub and drop_presence(room, id) then last = 1 end
end
return {last, redis.call('HLEN', ku)}
"#;

/// ARGV: P, room. -1 not found, else {HGETALL counts, HGETALL metas}.
pub(super) const PRESENCE: &str = r#"
if not tenant_exists() then return -1 end
reap()
local room = ARGV[2]
return {redis.call('HGETALL', P .. 'pu:' .. room), redis.call('HGETALL', P .. 'pm:' .. room)}
"#;

/// ARGV: P. -1 not found, else HGETALL room → subscribers.
pub(super) const ROOMS: &str = r#"
if not tenant_exists() then return -1 end
reap()
return redis.call('HGETALL', P .. 'rooms')
"#;

/// ARGV: P, node, ttl ms, room, conn id. -1 not found, else 1.
pub(super) const ROOM_SUBSCRIBE: &str = r#"
if not tenant_exists() then return -1 end
reap()
local node, ttl, room, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local k = P .. 'sub:' .. room
if redis.call('HEXISTS', k, id) == 1 then return 1 end
ensure_alive(node, ttl)
redis.call('HSET', k, id, node)
if redis.call('HINCRBY', P .. 'rooms', room, 1) == 1 then hook('room.occupied', room) end
redis.call('SADD', P .. 'owned:' .. node, 's' .. Z .. id .. Z .. room)
return 1
"#;

/// ARGV: P, room, conn id.
pub(super) const ROOM_UNSUBSCRIBE: &str = r#"
drop_sub(ARGV[2], ARGV[3])
return 1
"#;

/// ARGV: P, messages_in, messages_out, handshakes_refused (increments). A missing tenant
/// is a no-op.
pub(super) const ADD_STATS: &str = r#"
if not tenant_exists() then return 0 end
local ks = P .. 'stats'
local names = {'messages_in', 'messages_out', 'handshakes_refused'}
for i, name in ipairs(names) do
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', ks, name, ARGV[i + 1]) end
end
return 1
"#;

/// ARGV: P. -1 not found, else {connections, rooms, messages_in, messages_out, handshakes_refused}.
pub(super) const STATS: &str = r#"
if not tenant_exists() then return -1 end
reap()
local ks = P .. 'stats'
return {tostring(redis.call('HLEN', P .. 'conns')), tostring(redis.call('HLEN', P .. 'rooms')),
        redis.call('HGET', ks, 'messages_in') or '0', redis.call('HGET', ks, 'messages_out') or '0',
        redis.call('HGET', ks, 'handshakes_refused') or '0'}
"#;

/// ARGV: P, node, ttl ms. Refreshes the node's liveness in the tenant: -1 when the tenant
/// is gone, 0 when the node's key had expired (or never existed), 1 refreshed.
pub(super) const HEARTBEAT: &str = r#"
if not tenant_exists() then return -1 end
return redis.call('PEXPIRE', P .. 'alive:' .. ARGV[2], ARGV[3])
"#;

/// ARGV: P, node. Removes every record the node owns in the tenant, and its liveness key
/// (and its hold on the webhook outbox, so another node takes over at once).
pub(super) const GOODBYE: &str = r#"
purge(ARGV[2])
redis.call('DEL', P .. 'alive:' .. ARGV[2])
if redis.call('GET', P .. 'hooks:lease') == ARGV[2] then redis.call('DEL', P .. 'hooks:lease') end
return 1
"#;

/// ARGV: P, node, lease ms, max. Takes up to `max` events from the tenant's webhook
/// outbox for this node: one node at a time holds the outbox (`hooks:lease`, renewed by
/// every take), so the events of a tenant leave in their order. Reaps first, so a dead
/// node's rooms are vacated (and announced) even when no other script runs in the tenant.
/// -1 when the tenant does not exist; `{}` when another node holds the outbox.
pub(super) const HOOKS_TAKE: &str = r#"
if not tenant_exists() then return -1 end
local kl = P .. 'hooks:lease'
local holder = redis.call('GET', kl)
if holder and holder ~= ARGV[2] then return {} end
redis.call('SET', kl, ARGV[2], 'PX', ARGV[3])
reap()
local n = tonumber(ARGV[4])
local items = redis.call('LRANGE', P .. 'hooks', 0, n - 1)
if #items > 0 then redis.call('LTRIM', P .. 'hooks', #items, -1) end
return items
"#;

/// ARGV: P, on ('1'/'0'). Switches the tenant's webhook outbox on or off (off empties it).
pub(super) const HOOKS_SWITCH: &str = r#"
if not tenant_exists() then return -1 end
if ARGV[2] == '1' then
  redis.call('SET', P .. 'hooks:on', '1')
else
  redis.call('DEL', P .. 'hooks:on', P .. 'hooks')
end
return 1
"#;

/// ARGV: P, name, room, user, conn, code. Records an event no store transition makes
/// (`session.ended`).
pub(super) const HOOKS_PUSH: &str = r#"
if not tenant_exists() then return -1 end
hook(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"#;

/// On the global API key index: KEYS[1] = `sb:apikeys`, ARGV: hash, expected value.
/// Removes the entry only if it still holds the expected value. Needs no prelude.
pub(super) const INDEX_DEL_IF: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;
