
local kh, ke = P .. ARGV[2], P .. ARGV[2] .. ':exp'
local v = redis.call('HGET', kh, ARGV[3])
if not v then return false end
local live = tonumber(redis.call('ZSCORE', ke, ARGV[3]) or '0') > now_ms()
if ARGV[4] == '1' or not live then
  redis.call('HDEL', kh, ARGV[3])
  redis.call('ZREM', ke, ARGV[3])
end
if live then return v end
return false
