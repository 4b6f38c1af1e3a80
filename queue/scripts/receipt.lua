-- receipt: ARGV[6] id, [7] segment, [8] state (delivered|undelivered), [9] error code,
-- [10] error message, [11] carrier id. Returns {recorded 0|1, status}, {-1, ''} when
-- the message is gone, or {-2, 'queued'} when it is not acked yet: the carrier id
-- was indexed just before an ack that has not run (or never ran: the daemon
-- died, the message will be sent again). Recording the segment now would let
-- this stale copy's receipt take the segment of the copy that will be acked,
-- so the caller holds it for the held sweep instead.
local id = ARGV[6]
local mkey = base .. 'm:' .. id
local f = redis.call('HMGET', mkey, 'st', 'ncid', 'org', 'ref', 'dup', 'ev', 'k')
local st = f[1]
if not st then return {-1, ''} end
if st == 'queued' then return {-2, st} end
local m = {org = f[3], ref = f[4], dup = f[5], ev = f[6], k = f[7]}
local field = 'r' .. ARGV[7]
if redis.call('HSETNX', mkey, field, ARGV[8]) == 0 then return {0, st} end
if st ~= 'sent' then return {1, st} end
local now = now_us()
if ARGV[8] == 'undelivered' then
  finish(mkey, id, m, 'undelivered', now, ARGV[9], ARGV[10], ARGV[11])
  return {1, 'undelivered'}
end
-- dlv counts delivered segments; a one-segment message needs no count.
local need = tonumber(f[2] or 1) or 1
if need <= 1 or redis.call('HINCRBY', mkey, 'dlv', 1) >= need then
  finish(mkey, id, m, 'delivered', now, nil, nil, ARGV[11])
  return {1, 'delivered'}
end
return {1, st}
