-- expire_heads: ARGV[6] offset into the due senders, [7] max senders, [8] max
-- heads dropped in all. While no carrier can take messages the dispatcher
-- claims nothing, so claim never sees the expired heads; this ends them as
-- claim would (status expired, with the event), without leasing anything.
-- Returns {expired, senders looked at in full, of those the ones that left
-- ready (nothing queued any more), senders returned by the range}.
local now = now_us()
local budget = tonumber(ARGV[8])
local expired, looked, left = 0, 0, 0
local senders = redis.call('ZRANGEBYSCORE', base .. 'ready', '-inf', n2s(now),
  'LIMIT', tonumber(ARGV[6]), tonumber(ARGV[7]))
for _, from in ipairs(senders) do
  local qkey = base .. 'q:' .. from
  local dropped, done, dead = 0, false, 0
  while budget > 0 do
    local id = redis.call('LINDEX', qkey, 0)
    if not id then done = true break end
    local mkey = base .. 'm:' .. id
    local f = redis.call('HMGET', mkey, 'st', 'exp', 'org', 'ref', 'dup', 'ev', 'xi', 'k')
    local exp = tonumber(f[2]) or 0
    if f[1] == 'queued' and not (exp > 0 and exp <= now) then done = true break end
    redis.call('LPOP', qkey)
    if f[7] then redis.call('ZREM', base .. 'xq', id) end
    if f[1] == 'queued' then
      expire(mkey, id, {org = f[3], ref = f[4], dup = f[5], ev = f[6], k = f[8]}, now)
      expired = expired + 1
    else -- vanished or already final: not claimable, dropped as claim does
      dead = dead + 1
    end
    dropped = dropped + 1
    budget = budget - 1
  end
  if dead > 0 then
    -- As claim: the sender's count dq of ended ids in the list (see reap).
    local skey = base .. 's:' .. from
    local dq = tonumber(redis.call('HGET', skey, 'dq') or 0) - dead
    if dq < 0 or redis.call('LLEN', qkey) == 0 then dq = 0 end
    redis.call('HSET', skey, 'dq', dq)
  end
  if dropped > 0 and resched(from, now, false) < 0 then left = left + 1 end
  if not done then break end
  looked = looked + 1
end
return {expired, looked, left, #senders}
