
if not tenant_exists() then return -1 end
reap()
local ks = P .. 'stats'
return {tostring(redis.call('HLEN', P .. 'conns')), tostring(redis.call('HLEN', P .. 'rooms')),
        redis.call('HGET', ks, 'messages_in') or '0', redis.call('HGET', ks, 'messages_out') or '0',
        redis.call('HGET', ks, 'handshakes_refused') or '0'}
