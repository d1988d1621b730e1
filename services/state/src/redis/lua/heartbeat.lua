
if not tenant_exists() then return -1 end
return redis.call('PEXPIRE', P .. 'alive:' .. ARGV[2], ARGV[3])
