-- cid_hold (carrier-id bucket): holds receipts whose carrier id is indexed but
-- whose message is not acked yet (still queued: the id was indexed just before
-- an ack that has not run, or never ran because the daemon died); the held
-- sweep applies them once the message is sent.
-- KEYS[1] held-receipts key, KEYS[2] held set, ARGV[1] hold TTL ms,
-- ARGV[2] carrier id (normalized), ARGV[3] µs before the sweep looks at it,
-- ARGV[4..] receipt JSONs.
redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[2], 'LT', string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
return 1
