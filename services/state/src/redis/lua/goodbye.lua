
purge(ARGV[2])
redis.call('DEL', P .. 'alive:' .. ARGV[2])
if redis.call('GET', P .. 'hooks:lease') == ARGV[2] then redis.call('DEL', P .. 'hooks:lease') end
return 1
