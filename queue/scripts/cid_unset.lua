-- cid_unset (carrier-id bucket): undoes a cid_set whose ack failed.
-- KEYS[1] index key, KEYS[2] held-receipts key, ARGV[1] value cid_set stored,
-- ARGV[2] hold TTL ms, ARGV[3..] receipts cid_set returned, held again.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if #ARGV > 2 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
