-- mo_add: stores one part of a concatenated inbound message (MO), for any
-- daemon to complete: a carrier spreads the parts of one MO over its binds,
-- which bind leases spread over daemons.
-- KEYS[1] the MO's parts (HASH seq -> part), KEYS[2] the carrier's index of
-- incomplete MOs (ZSET assembly key -> first part's arrival, ms).
-- ARGV[1] seq, ARGV[2] total, ARGV[3] part, ARGV[4] assembly key,
-- ARGV[5] TTL of the parts (ms).
-- Returns the parts {seq, part, ...} (removed) when this one completed the
-- MO, else false.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  local all = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[4])
  return all
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'NX', now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return false
