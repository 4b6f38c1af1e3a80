-- ack: ARGV[6] id, [7] attempt, [8] carrier ids JSON, [9] first carrier id, [10] count
local id = ARGV[6]
local mkey = base .. 'm:' .. id
local m = lease_check(mkey, id, ARGV[7])
if not m then return 0 end
local now = now_us()
local nf, nx = release(id, m.from)
finish(mkey, id, m, 'sent', now, nil, nil, ARGV[9], {'cids', ARGV[8], 'ncid', ARGV[10]})
resched(m.from, now, false, nf, nx)
return 1
