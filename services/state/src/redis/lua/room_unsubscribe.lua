
drop_sub(ARGV[2], ARGV[3])
return 1
