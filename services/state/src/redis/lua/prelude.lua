
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
