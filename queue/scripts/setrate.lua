-- setrate: ARGV[6] from, [7] interval us
redis.call('HSET', base .. 's:' .. ARGV[6], 'iv', ARGV[7])
return 1
