-- ack: ARGV[6] id, [7] attempt, [8] carrier ids JSON, [9] first carrier id, [10] count
-- Returns 0 when the lease is lost, else {1, the sender's score in ready (µs) or -1,
-- 1 when the sender was added to ready}. Repeating an ack that ran (its reply was
-- lost with the connection) succeeds again without changing anything.
local id = ARGV[6]
local mkey = base .. 'm:' .. id
local m = lease_check(mkey, id, ARGV[7], true)
if not m then
  local f = redis.call('HMGET', mkey, 'st', 'att', 'cids')
  if f[1] and f[1] ~= 'queued' and tonumber(f[2]) == tonumber(ARGV[7]) and f[3] == ARGV[8] then
    return {1, -1, 0}
  end
  return 0
end
local now = now_us()
local nf, nx = release(id, m.from, true)
finish(mkey, id, m, 'sent', now, nil, nil, ARGV[9], {'cids', ARGV[8], 'ncid', ARGV[10]})
local score, added = resched(m.from, now, false, nf, nx)
return {1, score, added}
