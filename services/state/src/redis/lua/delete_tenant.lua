
if not tenant_exists() then return -1 end
local vals = redis.call('HVALS', P .. 'apikeys')
local keys = {KEYS[1]}
for _, s in ipairs({'keys', 'apikeys', 'tickets', 'tickets:exp', 'sessions', 'sessions:exp',
                    'revocations', 'revocations:exp',
                    'conns', 'conns:own', 'conns:users', 'rooms', 'presence', 'stats', 'nodes',
                    'hooks', 'hooks:on', 'hooks:seq', 'hooks:lease', 'hooks:dropped'}) do
  table.insert(keys, P .. s)
end
for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  table.insert(keys, P .. 'alive:' .. n)
  table.insert(keys, P .. 'owned:' .. n)
end
for _, r in ipairs(redis.call('SMEMBERS', P .. 'presence')) do
  table.insert(keys, P .. 'pc:' .. r)
  table.insert(keys, P .. 'pu:' .. r)
  table.insert(keys, P .. 'pm:' .. r)
end
for _, r in ipairs(redis.call('HKEYS', P .. 'rooms')) do
  table.insert(keys, P .. 'sub:' .. r)
end
for i = 1, #keys, 200 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 199, #keys)))
end
return vals
