
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
