
if not tenant_exists() then return -1 end
return redis.call('HVALS', P .. ARGV[2])
