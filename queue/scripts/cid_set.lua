-- cid_set (carrier-id bucket): KEYS[1] index key, KEYS[2] held-receipts key,
-- ARGV[1] value "msgID|segment", ARGV[2] TTL ms. Returns receipts held for this id.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local held = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return held
