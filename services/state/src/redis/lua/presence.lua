
if not tenant_exists() then return -1 end
reap()
local room = ARGV[2]
return {redis.call('HGETALL', P .. 'pu:' .. room), redis.call('HGETALL', P .. 'pm:' .. room)}
