-- mo_add: stores one part of a concatenated inbound message (MO), for any
-- daemon to complete: a carrier spreads the parts of one MO over its binds,
-- which bind leases spread over daemons.
-- KEYS[1] the MO's parts (HASH seq -> part, plus f: first part's arrival
-- in ms, and l: set while a caller holds it to hand it on), KEYS[2] the
-- carrier's index (ZSET assembly key -> when the sweep may take it, ms),
-- KEYS[3] the marker of an MO already handed on.
-- ARGV[1] seq, ARGV[2] total, ARGV[3] part, ARGV[4] assembly key,
-- ARGV[5] TTL of the parts (ms), ARGV[6] reassembly timeout (ms),
-- ARGV[7] lease (ms).
-- Returns {'dup'} for a late copy of a part of an MO handed on, {'part'}
-- when stored and incomplete (or held), or {'complete', first, {seq, part,
-- ...}} when this part completed it: the caller holds it for ARGV[7] ms and
-- calls mo_done (or mo_release) after handing it on.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'dup'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HSETNX', KEYS[1], 'f', now) == 1 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[4])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('HEXISTS', KEYS[1], 'l') == 1 then
  return {'part'}
end
local all = redis.call('HGETALL', KEYS[1])
local parts, first = {}, 0
for i = 1, #all, 2 do
  if all[i] == 'f' then
    first = all[i + 1]
  else
    parts[#parts + 1] = all[i]
    parts[#parts + 1] = all[i + 1]
  end
end
if #parts / 2 < tonumber(ARGV[2]) then
  return {'part'}
end
redis.call('HSET', KEYS[1], 'l', 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), ARGV[4])
return {'complete', first, parts}
