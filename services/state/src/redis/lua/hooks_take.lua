
if not tenant_exists() then return -1 end
local kl = P .. 'hooks:lease'
local holder = redis.call('GET', kl)
if holder and holder ~= ARGV[2] then return {} end
redis.call('SET', kl, ARGV[2], 'PX', ARGV[3])
reap()
local n = tonumber(ARGV[4])
local items = redis.call('LRANGE', P .. 'hooks', 0, n - 1)
if #items > 0 then redis.call('LTRIM', P .. 'hooks', #items, -1) end
return items
