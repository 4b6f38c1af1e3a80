-- mo_take: removes and returns the incomplete MOs of a carrier whose first
-- part arrived more than ARGV[1] ms ago, at most ARGV[2]: the caller hands
-- on the parts received (one daemon takes each).
-- KEYS[1] the carrier's index (see mo_add); ARGV[3] the prefix of the parts
-- keys (same slot: the prefix carries the index's hash tag).
-- Returns {{assembly key, first (ms), {seq, part, ...}}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #due, 2 do
  local key = due[i]
  redis.call('ZREM', KEYS[1], key)
  local parts = ARGV[3] .. key
  local all = redis.call('HGETALL', parts)
  redis.call('DEL', parts)
  if #all > 0 then -- else the parts expired (MOPartsTTL) before any sweep
    out[#out + 1] = {key, due[i + 1], all}
  end
end
return out
