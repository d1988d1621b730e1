
if not tenant_exists() then return -1 end
return redis.call('HSETNX', P .. ARGV[2], ARGV[3], ARGV[4])
