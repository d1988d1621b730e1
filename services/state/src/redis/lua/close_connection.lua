
drop_conn(ARGV[2])
return 1
