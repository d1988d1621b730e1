
local kr, ke = P .. 'revocations', P .. 'revocations:exp'
local function clean()
  local now = tonumber(redis.call('TIME')[1])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ke, '-inf', now)) do
    redis.call('HDEL', kr, id)
  end
  redis.call('ZREMRANGEBYSCORE', ke, '-inf', now)
end
