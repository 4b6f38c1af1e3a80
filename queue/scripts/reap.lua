-- reap: ARGV[6] max. Leases that expired go back to the head of their sender's
-- list, flagged as possible duplicates; queued messages of the expiry index
-- whose validity passed end expired. Returns {leases reaped, messages expired}.
local now = now_us()
local ids = redis.call('ZRANGEBYSCORE', base .. 'inflight', '-inf', n2s(now), 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(ids) do
  local mkey = base .. 'm:' .. id
  local f = redis.call('HMGET', mkey, 'from', 'st')
  if not f[1] then
    redis.call('ZREM', base .. 'inflight', id) -- record gone
  else
    local nf, nx = release(id, f[1])
    if f[2] == 'queued' then
      redis.call('LPUSH', base .. 'q:' .. f[1], id)
      redis.call('HSET', mkey, 'dup', '1', hist_field(mkey), hist_entry('queued', now, 'lease_expired',
        'the daemon holding the message stopped answering; it will be sent again'))
    end
    resched(f[1], now, false, nf, nx)
  end
end
-- Messages of the expiry index (see enqueue) whose validity passed while
-- they waited behind others end expired now. Their ids stay in the list
-- (removing them would cost a scan of it), counted in the sender's field dq
-- so the depth leaves them out; claim drops them when they reach the head.
local expired = 0
local xids = redis.call('ZRANGEBYSCORE', base .. 'xq', '-inf', n2s(now), 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(xids) do
  redis.call('ZREM', base .. 'xq', id)
  local mkey = base .. 'm:' .. id
  local f = redis.call('HMGET', mkey, 'st', 'exp', 'org', 'ref', 'dup', 'ev', 'from', 'k')
  local exp = tonumber(f[2]) or 0
  if f[1] == 'queued' and exp > 0 and exp <= now
      and not redis.call('ZSCORE', base .. 'inflight', id) then
    redis.call('HDEL', mkey, 'xi')
    redis.call('HINCRBY', base .. 's:' .. f[7], 'dq', 1)
    expire(mkey, id, {org = f[3], ref = f[4], dup = f[5], ev = f[6], k = f[8]}, now)
    expired = expired + 1
  end
end
return {#ids, expired}
