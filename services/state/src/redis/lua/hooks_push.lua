
if not tenant_exists() then return -1 end
hook(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
