-- fail: ARGV[6] id, [7] attempt, [8] error code, [9] error message
-- Returns 0 when the lease is lost, else {1, the sender's score in ready (µs) or -1,
-- 1 when the sender was added to ready}.
local id = ARGV[6]
local mkey = base .. 'm:' .. id
local m = lease_check(mkey, id, ARGV[7], true)
if not m then return 0 end
local now = now_us()
local nf, nx = release(id, m.from, true)
finish(mkey, id, m, 'failed', now, ARGV[8], ARGV[9], '')
local score, added = resched(m.from, now, false, nf, nx)
return {1, score, added}
