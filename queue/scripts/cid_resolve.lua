-- cid_resolve (carrier-id bucket): KEYS[1] index key, KEYS[2] held-receipts key,
-- KEYS[3] held set (ZSET of carrier ids with held receipts -> next sweep time µs),
-- ARGV[1] receipt JSON, ARGV[2] hold TTL ms, ARGV[3] carrier id (normalized),
-- ARGV[4] µs before the first sweep looks at it.
-- Returns the index value, or false after holding the receipt for a later ack.
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[3], 'LT', string.format('%.0f', now + tonumber(ARGV[4])), ARGV[3])
return false
