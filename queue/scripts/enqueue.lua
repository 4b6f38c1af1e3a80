-- enqueue: ARGV[6] from, [7] to, [8] org, [9] idempotency key ("" none),
-- [10] request hash, [11] response, [12] max depth (0 none), [13] interval us (<0 keep),
-- [14] check opt-out "1", [15] idempotency TTL ms,
-- [16..20] message: id, body, expires us (0 none), segments, client_ref,
-- [21..25] notice: same ("" id: no notice),
-- [26] event filter of both (field ev, see finish; "": every status),
-- [27] the message's kind when it is not a user message (field k; the
-- notice's is "notice"), [28] deadline (µs, Redis's clock; 0 none)
-- Returns {'ok', notice queued 0|1, sender's ready score (µs) or -1,
-- 1 when the sender was added to ready, Redis's time (µs)}, or {'replay',
-- response}, {'conflict'}, {'optout'}, {'full'}, {'late', Redis's time}.
local from, to, org = ARGV[6], ARGV[7], ARGV[8]
local now = now_us()
-- Ids are unique per call, so an existing record means an earlier attempt
-- of this same call stored it (its reply was lost and the client sent the
-- script again): that attempt's outcome stands, also past the deadline
-- below (the checks below could now answer otherwise: the conversation
-- started, the queue filled).
if redis.call('EXISTS', base .. 'm:' .. ARGV[16]) == 1 then
  if ARGV[21] ~= '' and redis.call('EXISTS', base .. 'm:' .. ARGV[21]) == 1 then
    return {'ok', 1, -1, 0, now}
  end
  return {'ok', 0, -1, 0, now}
end
-- A call that reaches Redis after its deadline stores nothing: its caller
-- has answered (or will) that nothing was accepted. (Redis stalled, or the
-- client gave up and the command ran from a closed connection's buffer.)
local deadline = tonumber(ARGV[28] or 0)
if deadline > 0 and now > deadline then
  return {'late', now}
end
local idem = ''
if ARGV[9] ~= '' then
  idem = base .. 'idem:' .. org .. ':' .. ARGV[9]
  local v = redis.call('HMGET', idem, 'h', 'r')
  if v[1] then
    if v[1] == ARGV[10] then return {'replay', v[2] or ''} end
    return {'conflict'}
  end
end
if ARGV[14] == '1' and redis.call('SISMEMBER', base .. 'optout:' .. from, to) == 1 then
  return {'optout'}
end
local qkey = base .. 'q:' .. from
local skey = base .. 's:' .. from
local notice = false
if ARGV[21] ~= '' and redis.call('SISMEMBER', base .. 'conv:' .. from, to) == 0 then
  notice = true
end
local n = 1
if notice then n = 2 end
-- The sender's state: nf, nx (see resched), iv (rate interval), mx: about
-- the latest expiry queued (µs, "x" for a message without one), and dq: ids
-- still in the list whose message Reap already ended (see reap), which the
-- depth does not count.
local s = redis.call('HMGET', skey, 'nf', 'nx', 'iv', 'mx', 'dq')
local maxdepth = tonumber(ARGV[12])
if maxdepth > 0 and redis.call('LLEN', qkey) - tonumber(s[5] or 0) + n > maxdepth then
  return {'full'}
end
local ev = ARGV[26] or ''
local mxSlack = 60000000 -- 1 min in µs, see store
local mx = tonumber(s[4] or 0)
if s[4] == 'x' then mx = math.huge end
local mx0 = mx
local function store(i)
  local id = ARGV[i]
  local args = {'HSET', base .. 'm:' .. id, 'body', ARGV[i + 1], 'st', 'queued', 'att', 0, 'exp', ARGV[i + 2],
    'segs', ARGV[i + 3], 'ref', ARGV[i + 4], 'org', org, 'from', from,
    'nh', 1, 'h1', hist_entry('queued', now, nil, nil)}
  if ev ~= '' then
    args[#args + 1] = 'ev'
    args[#args + 1] = ev
  end
  local kind = ARGV[27] or ''
  if i == 21 then
    kind = 'notice'
    args[#args + 1] = 'to' -- to restart its conversation should it fail (see finish)
    args[#args + 1] = to
  end
  if kind ~= '' then
    args[#args + 1] = 'k'
    args[#args + 1] = kind
  end
  -- Claim notices an expired message when it reaches the head: in time when
  -- nothing ahead of it expires later. A message that expires before one
  -- ahead of it (by more than mxSlack) is also put in the bucket's expiry
  -- index xq (field xi), which Reap sweeps, so its expiry is reported when
  -- it happens. mx moves only in steps of mxSlack, so that an enqueue
  -- seldom writes it: a message it leaves out is reported at most mxSlack
  -- late.
  local exp = tonumber(ARGV[i + 2])
  if exp == 0 then exp = math.huge end
  if exp < mx then
    if redis.call('LLEN', qkey) > 0 then
      args[#args + 1] = 'xi'
      args[#args + 1] = '1'
      redis.call('ZADD', base .. 'xq', ARGV[i + 2], id)
    else
      mx = 0 -- nothing queued: only what follows counts
    end
  end
  if exp > mx + mxSlack then mx = exp end
  redis.call(unpack(args))
  redis.call('RPUSH', qkey, id)
end
if notice then
  redis.call('SADD', base .. 'conv:' .. from, to)
  store(21)
end
store(16)
-- iv, mx and dq are written only when they changed.
local set = {}
if tonumber(s[5] or 0) ~= 0 and redis.call('LLEN', qkey) == n then
  -- The list held nothing before this call: no ended id is left in it.
  set[#set + 1] = 'dq'
  set[#set + 1] = 0
end
if tonumber(ARGV[13]) >= 0 and s[3] ~= ARGV[13] then
  set[#set + 1] = 'iv'
  set[#set + 1] = ARGV[13]
end
if mx ~= mx0 then
  set[#set + 1] = 'mx'
  if mx == math.huge then set[#set + 1] = 'x' else set[#set + 1] = n2s(mx) end
end
if #set > 0 then
  redis.call('HSET', skey, unpack(set))
end
local score, added = resched(from, now, false, tonumber(s[1] or 0), tonumber(s[2] or 0), true)
if idem ~= '' then
  redis.call('HSET', idem, 'h', ARGV[10], 'r', ARGV[11])
  redis.call('PEXPIRE', idem, ARGV[15])
end
if notice then return {'ok', 1, score, added, now} end
return {'ok', 0, score, added, now}
