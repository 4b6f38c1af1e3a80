-- mo_put: puts parts of an MO back (its handler failed): parts stored
-- meanwhile are kept, and the MO is indexed from first (ms) again.
-- KEYS as mo_add; ARGV[1] assembly key, ARGV[2] first (ms), ARGV[3] TTL (ms),
-- ARGV[4..] seq, part, ...
for i = 4, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
