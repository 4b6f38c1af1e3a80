-- renew: ARGV[6] id, [7] attempt, [8] lease us from now
local id = ARGV[6]
local mkey = base .. 'm:' .. id
if not lease_check(mkey, id, ARGV[7]) then return 0 end
redis.call('ZADD', base .. 'inflight', 'XX', n2s(now_us() + tonumber(ARGV[8])), id)
return 1
