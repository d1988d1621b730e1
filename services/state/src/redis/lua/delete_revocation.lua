
if not tenant_exists() then return -1 end
redis.call('ZREM', P .. 'revocations:exp', ARGV[2])
return redis.call('HDEL', P .. 'revocations', ARGV[2])
