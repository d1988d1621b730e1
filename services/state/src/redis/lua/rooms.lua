
if not tenant_exists() then return -1 end
reap()
return redis.call('HGETALL', P .. 'rooms')
