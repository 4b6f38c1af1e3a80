-- retry: ARGV[6] id, [7] attempt, [8] delay us, [9] error code, [10] error message,
-- [11] "1" to flag a possible duplicate. The message goes back to the head of its list.
-- Returns 0 when the lease is lost, else {1, the sender's score in ready (µs) or -1,
-- 1 when the sender was added to ready}.
local id = ARGV[6]
local mkey = base .. 'm:' .. id
local m = lease_check(mkey, id, ARGV[7], true)
if not m then return 0 end
local now = now_us()
local nf, nx = release(id, m.from, true)
redis.call('LPUSH', base .. 'q:' .. m.from, id)
local dup = m.dup or '0'
if ARGV[11] == '1' then dup = '1' end
redis.call('HSET', mkey, 'dup', dup, hist_field(mkey), hist_entry('queued', now, ARGV[9], ARGV[10]))
local at = now + tonumber(ARGV[8])
if nx < at then
  nx = at
  redis.call('HSET', base .. 's:' .. m.from, 'nx', n2s(nx))
end
local score, added = resched(m.from, now, true, nf, nx)
return {1, score, added}
