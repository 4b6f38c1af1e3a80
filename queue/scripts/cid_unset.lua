-- cid_unset (carrier-id bucket): undoes an index entry whose ack failed (lease lost).
-- KEYS[1] index key, ARGV[1] value the ack pipeline stored.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
