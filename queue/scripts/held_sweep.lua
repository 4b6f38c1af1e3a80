-- held_sweep (carrier-id bucket): KEYS[1] held set, ARGV[1] key prefix of the
-- carrier-id bucket ("<prefix>{c<N>}:"), ARGV[2] max carrier ids, ARGV[3] hold
-- TTL ms, ARGV[4] min and ARGV[5] max µs until a carrier id is looked at again.
-- Takes the carrier ids due for a look; forgets those whose held receipts
-- expired; reschedules the others (later the longer they have waited, so
-- receipts for ids never indexed cost little) and returns those now indexed:
-- {{carrier id, index value, {receipt JSON...}}...}. The caller applies them
-- and removes them with cid_done; if it dies first, the next look retries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(ARGV[3])
local mind, maxd = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now), 'LIMIT', 0, tonumber(ARGV[2]))
for _, cid in ipairs(due) do
  local hkey = ARGV[1] .. 'held:' .. cid
  local ttl = redis.call('PTTL', hkey)
  if ttl == -2 then
    redis.call('ZREM', KEYS[1], cid) -- applied, or expired unmatched
  else
    local age = hold
    if ttl >= 0 and ttl < hold then age = hold - ttl end
    local d = age * 1000
    if d < mind then d = mind end
    if d > maxd then d = maxd end
    redis.call('ZADD', KEYS[1], string.format('%.0f', now + d), cid)
    local v = redis.call('GET', ARGV[1] .. 'cid:' .. cid)
    if v then
      out[#out + 1] = {cid, v, redis.call('LRANGE', hkey, 0, -1)}
    end
  end
end
return out
