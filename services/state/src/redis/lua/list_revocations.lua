
if not tenant_exists() then return -1 end
clean()
return redis.call('HVALS', kr)
