
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
