-- mo_take: takes at most ARGV[1] incomplete MOs of a carrier whose time
-- came (the reassembly timeout passed, or a previous taker's lease lapsed:
-- it died or its hand-off failed), holding each for ARGV[2] ms; the caller
-- hands on the parts received and calls mo_done.
-- KEYS[1] the carrier's index (see mo_add); ARGV[3] the prefix of the parts
-- keys (same slot: the prefix carries the index's hash tag).
-- Returns {{assembly key, first (ms), {seq, part, ...}}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, key in ipairs(due) do
  local h = ARGV[3] .. key
  local all = redis.call('HGETALL', h)
  local parts, first = {}, 0
  for i = 1, #all, 2 do
    if all[i] == 'f' then
      first = all[i + 1]
    elseif all[i] ~= 'l' then
      parts[#parts + 1] = all[i]
      parts[#parts + 1] = all[i + 1]
    end
  end
  if #parts == 0 then
    -- The parts expired (MOPartsTTL) before any sweep.
    redis.call('ZREM', KEYS[1], key)
    redis.call('DEL', h)
  else
    redis.call('HSET', h, 'l', 1)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), key)
    out[#out + 1] = {key, first, parts}
  end
end
return out
