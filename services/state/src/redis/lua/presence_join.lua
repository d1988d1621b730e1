
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
