-- claim: ARGV[6] max senders, ARGV[7] lease us, ARGV[8] max expired heads dropped per sender
-- Returns {{id, body, attempt, dup}...}, expired count, the earliest score left in
-- ready (µs, -1 when empty) and how many senders are still due.
local now = now_us()
local lease = tonumber(ARGV[7])
local maxdrop = tonumber(ARGV[8])
local out = {}
local expired = 0
local senders = redis.call('ZRANGEBYSCORE', base .. 'ready', '-inf', n2s(now), 'LIMIT', 0, tonumber(ARGV[6]))
for _, from in ipairs(senders) do
  local qkey = base .. 'q:' .. from
  local okey = base .. 'optout:' .. from
  -- Only senders with opt-outs pay for decoding the body to check them.
  local optouts = redis.call('SCARD', okey) > 0
  local function opted_out(body)
    local m = cjson.decode(body)
    return m.kind ~= 'reply' and redis.call('SISMEMBER', okey, m.to) == 1
  end
  local skey = base .. 's:' .. from
  local s = redis.call('HMGET', skey, 'iv', 'nx', 'nf', 'dq')
  local iv, nx, nf = tonumber(s[1] or 0), tonumber(s[2] or 0), tonumber(s[3] or 0)
  -- dq counts the ids in the list whose message Reap ended (see reap).
  local dq0 = tonumber(s[4] or 0)
  local dq = dq0
  local dropped = 0
  while dropped < maxdrop do
    local id = redis.call('LPOP', qkey)
    if not id then
      dq = 0
      break
    end
    local mkey = base .. 'm:' .. id
    local f = redis.call('HMGET', mkey, 'st', 'exp', 'segs', 'body', 'dup', 'org', 'ref', 'ev', 'xi', 'k')
    if f[9] then
      -- Out of the expiry index: a message out of the list is leased or
      -- final (see enqueue).
      redis.call('ZREM', base .. 'xq', id)
      redis.call('HDEL', mkey, 'xi')
    end
    if f[1] ~= 'queued' then
      dropped = dropped + 1 -- vanished or already final: not claimable
      if dq > 0 then dq = dq - 1 end
    elseif tonumber(f[2]) > 0 and tonumber(f[2]) <= now then
      expire(mkey, id, {org = f[6], ref = f[7], dup = f[5], ev = f[8], k = f[10]}, now)
      expired = expired + 1
      dropped = dropped + 1
    elseif optouts and opted_out(f[4]) then
      -- The recipient texted STOP after this message was accepted: it is not
      -- sent (keyword replies, which confirm the opt-out, still are).
      finish(mkey, id, {org = f[6], ref = f[7], dup = f[5], ev = f[8], k = f[10]}, 'failed', now,
        'recipient_opted_out', 'the recipient opted out (replied STOP) after the message was accepted, so it was not sent', '')
      dropped = dropped + 1
    else
      local att = redis.call('HINCRBY', mkey, 'att', 1)
      redis.call('ZADD', base .. 'inflight', n2s(now + lease), id)
      -- GCRA: a sender claimed a little late (poll latency) may catch up by
      -- at most one interval (20 ms at most), so the rate holds on average
      -- while any 1 s window still sees at most rate + 1.
      local slack = iv
      if slack > 20000 then slack = 20000 end
      if nx < now - slack then nx = now - slack end
      local segs = tonumber(f[3]) or 1
      if segs < 1 then segs = 1 end
      nx = nx + iv * segs
      nf = nf + 1
      redis.call('HSET', skey, 'nx', n2s(nx), 'nf', nf)
      out[#out + 1] = {id, f[4], att, f[5] or '0'}
      break
    end
  end
  if dq ~= dq0 then redis.call('HSET', skey, 'dq', dq) end
  resched(from, now, true, nf, nx)
end
local next = redis.call('ZRANGE', base .. 'ready', 0, 0, 'WITHSCORES')
if #next == 0 then return {out, expired, -1, 0} end
return {out, expired, tonumber(next[2]), redis.call('ZCOUNT', base .. 'ready', '-inf', n2s(now))}
