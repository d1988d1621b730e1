
if not tenant_exists() then return -1 end
if ARGV[2] == '1' then
  redis.call('SET', P .. 'hooks:on', '1')
else
  redis.call('DEL', P .. 'hooks:on', P .. 'hooks')
end
return 1
