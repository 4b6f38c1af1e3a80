-- reap: ARGV[6] max. Leases that expired go back to the head of their sender's
-- list, flagged as possible duplicates.
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
return #ids
