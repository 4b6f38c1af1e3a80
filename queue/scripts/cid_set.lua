-- cid_set (carrier-id bucket): KEYS[1] index key, KEYS[2] held-receipts key,
-- KEYS[3] held set, ARGV[1] value "msgID|segment", ARGV[2] TTL ms,
-- ARGV[3] carrier id (normalized), ARGV[4] µs before the held sweep looks at it.
-- Returns the receipts held for this id. They stay held (cid_done removes each
-- once applied), so a daemon that dies before applying them loses nothing: the
-- held sweep of any daemon finds them, scheduled here.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('ZADD', KEYS[3], 'LT', string.format('%.0f', now + tonumber(ARGV[4])), ARGV[3])
end
return held
