-- cid_resolve (carrier-id bucket): KEYS[1] index key, KEYS[2] held-receipts key,
-- ARGV[1] receipt JSON, ARGV[2] hold TTL ms.
-- Returns the index value, or false after holding the receipt for a later ack.
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return false
