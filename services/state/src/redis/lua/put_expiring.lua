
if not tenant_exists() then return -1 end
local kh, ke = P .. ARGV[2], P .. ARGV[2] .. ':exp'
local now = now_ms()
for _, h in ipairs(redis.call('ZRANGEBYSCORE', ke, '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('HDEL', kh, h)
  redis.call('ZREM', ke, h)
end
local ttl = tonumber(ARGV[5])
redis.call('HSET', kh, ARGV[3], ARGV[4])
redis.call('ZADD', ke, now + ttl, ARGV[3])
local keep = ttl + 1000
if redis.call('PTTL', kh) < keep or redis.call('PTTL', ke) < keep then
  redis.call('PEXPIRE', kh, keep)
  redis.call('PEXPIRE', ke, keep)
end
return 1
