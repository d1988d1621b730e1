
if not tenant_exists() then return -1 end
local v = redis.call('HGET', P .. ARGV[2], ARGV[3])
if v then redis.call('HDEL', P .. ARGV[2], ARGV[3]) end
return v
