
local room, sub, id = ARGV[2], ARGV[3], ARGV[4]
local ku = P .. 'pu:' .. room
if not tenant_exists() then return {0, 0} end
reap()
local own = redis.call('HGET', P .. 'pc:' .. room, id)
local last = 0
if own then
  local _, s = split(own)
  if s == sub and drop_presence(room, id) then last = 1 end
end
return {last, redis.call('HLEN', ku)}
