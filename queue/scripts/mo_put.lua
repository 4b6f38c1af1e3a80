-- mo_put: ends the holding of an MO taken by mo_add or mo_take.
-- KEYS[1] the MO's parts, KEYS[2] the carrier's index, KEYS[3] the marker of
-- an MO handed on. ARGV[1] assembly key, ARGV[2] "done" or "release",
-- ARGV[3] marker TTL (ms) for done; for release: ARGV[4] the part to drop
-- ("" none), ARGV[5] ms until the sweep may take it.
-- done: the MO was handed on; its parts go, and a late copy of one of them
-- is recognised for a while. release: the hand-off failed; the part that
-- completed it (the carrier delivers it again) is dropped and it waits again.
if ARGV[2] == 'done' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[3])
  return 1
end
if ARGV[4] ~= '' then
  redis.call('HDEL', KEYS[1], ARGV[4])
end
redis.call('HDEL', KEYS[1], 'l')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return 1
