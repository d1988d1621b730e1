
if not tenant_exists() then return 0 end
local ks = P .. 'stats'
local names = {'messages_in', 'messages_out', 'handshakes_refused'}
for i, name in ipairs(names) do
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', ks, name, ARGV[i + 1]) end
end
return 1
