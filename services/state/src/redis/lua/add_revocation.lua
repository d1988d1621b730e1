
if not tenant_exists() then return -1 end
clean()
redis.call('HSET', kr, ARGV[2], ARGV[3])
redis.call('ZADD', ke, ARGV[4], ARGV[2])
local top = redis.call('ZRANGE', ke, -1, -1, 'WITHSCORES')
local last = tonumber(top[2] or '0')
if last < 1e11 then
  redis.call('EXPIREAT', kr, math.floor(last) + 1)
  redis.call('EXPIREAT', ke, math.floor(last) + 1)
else
  redis.call('PERSIST', kr)
  redis.call('PERSIST', ke)
end
return 1
