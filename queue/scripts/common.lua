-- Shared prelude of every bucket script. Go prepends it to each script.
-- KEYS[1] is a key of the bucket (declared so clients route by its slot).
-- ARGV[1] base: "<prefix>{b<N>}:" (every key below starts with it)
-- ARGV[2] bucket number, ARGV[3] events stream MAXLEN,
-- ARGV[4] per-sender in-flight window, ARGV[5] retention of finished messages (ms)
local base = ARGV[1]
local bucket = ARGV[2]
local maxlen = ARGV[3]
local window = tonumber(ARGV[4])
local retention = ARGV[5]

-- n2s formats a number as an integer string: Lua's default conversion keeps
-- only 14 significant digits, too few for microsecond timestamps.
local function n2s(n)
  return string.format('%.0f', n)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- hist_entry encodes one history entry compactly for Get to parse:
-- "status|µs|<len of code>|" followed by code and message (so neither needs
-- escaping). Entries are the hash fields h1, h2, … of the message, numbered by
-- its field nh, so a status change writes one small field instead of
-- rewriting the whole history.
local function hist_entry(status, now, code, msg)
  if code and code ~= '' then
    return status .. '|' .. n2s(now) .. '|' .. #code .. '|' .. code .. (msg or '')
  end
  return status .. '|' .. n2s(now) .. '|0|'
end

-- hist_field returns the name of the message's next history field.
local function hist_field(mkey)
  return 'h' .. redis.call('HINCRBY', mkey, 'nh', 1)
end

-- emit appends one event to the bucket's stream. The event's id and time
-- come from the entry's stream id (the webhook derives "evt_b<N>_<ms>_<seq>"
-- and created_at from it), so they cost no field and no counter here.
local function emit(typ, org, data)
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', maxlen, '*',
    'type', typ, 'org', org, 'data', data)
end

-- finish sets status (sent or final) on message id, records it in the
-- history, emits the message.status event unless the message's event filter
-- (field ev: the first letters of the statuses its org wants, absent: all)
-- leaves it out, and starts the retention TTL.
-- m holds the fields of MF; extra are more field/value pairs to set.
local function finish(mkey, id, m, status, now, code, msg, cid, extra)
  local args = {'HSET', mkey, 'st', status, hist_field(mkey), hist_entry(status, now, code, msg)}
  if extra then
    for _, v in ipairs(extra) do args[#args + 1] = v end
  end
  redis.call(unpack(args))
  if not m.ev or string.find(m.ev, string.sub(status, 1, 1), 1, true) then
    local d = {id = id, status = status, client_ref = m.ref or '', carrier_message_id = cid or ''}
    if code and code ~= '' then
      d.error = {code = code, message = msg or ''}
    end
    if m.dup == '1' then
      d.possible_duplicate = true
    end
    if m.k then
      d.kind = m.k -- a message the daemon sent on its own (notice, reply)
    end
    emit('message.status', m.org or '', cjson.encode(d))
  end
  redis.call('PEXPIRE', mkey, retention)
  -- A notice that ends without reaching the recipient leaves its
  -- conversation unstarted: the org's next message is preceded by one again.
  if m.k == 'notice' and (status == 'failed' or status == 'expired' or status == 'undelivered') then
    local ft = redis.call('HMGET', mkey, 'from', 'to')
    if ft[1] and ft[2] then
      redis.call('SREM', base .. 'conv:' .. ft[1], ft[2])
    end
  end
end

-- expire ends queued message id, whose validity passed, as expired (m as
-- in finish).
local function expire(mkey, id, m, now)
  finish(mkey, id, m, 'expired', now,
    'expired', 'the validity period passed before the message could be sent', '')
end

-- resched puts sender "from" into ready iff it has queued messages and room
-- in its in-flight window. force re-scores it (its next-allowed time moved);
-- otherwise a sender already waiting keeps its place. nf and nx are the
-- sender's in-flight count and next-allowed time when the caller knows them;
-- nonempty says the caller knows the sender's list is not empty.
-- Returns the sender's score in ready (µs, -1 when it is not there) and 1
-- when this call put it there (0 when it was already there or is not).
local function resched(from, now, force, nf, nx, nonempty)
  if nf == nil then
    local f = redis.call('HMGET', base .. 's:' .. from, 'nf', 'nx')
    nf = tonumber(f[1] or 0)
    nx = tonumber(f[2] or 0)
  end
  if nf < window and (nonempty or redis.call('LLEN', base .. 'q:' .. from) > 0) then
    if nx < now then nx = now end
    if force then
      return nx, redis.call('ZADD', base .. 'ready', n2s(nx), from)
    end
    if redis.call('ZADD', base .. 'ready', 'NX', n2s(nx), from) == 1 then
      return nx, 1
    end
    return tonumber(redis.call('ZSCORE', base .. 'ready', from)), 0
  end
  redis.call('ZREM', base .. 'ready', from)
  return -1, 0
end

-- lease_check returns the message's fields {from, org, ref, dup, ev, k} when id
-- is in flight with this attempt, else nil. take also ends the lease (removes
-- id from inflight), so the caller must then release the sender's slot.
local function lease_check(mkey, id, attempt, take)
  local f = redis.call('HMGET', mkey, 'att', 'from', 'org', 'ref', 'dup', 'ev', 'k')
  if not f[1] or tonumber(f[1]) ~= tonumber(attempt) or not f[2] then return nil end
  if take then
    if redis.call('ZREM', base .. 'inflight', id) == 0 then return nil end
  elseif not redis.call('ZSCORE', base .. 'inflight', id) then
    return nil
  end
  return {from = f[2], org = f[3], ref = f[4], dup = f[5], ev = f[6], k = f[7]}
end

-- release ends the lease of message id; returns the sender's in-flight
-- count and next-allowed time for resched.
local function release(id, from, taken)
  if not taken then redis.call('ZREM', base .. 'inflight', id) end
  local skey = base .. 's:' .. from
  local nf = redis.call('HINCRBY', skey, 'nf', -1)
  if nf < 0 then
    redis.call('HSET', skey, 'nf', 0)
    nf = 0
  end
  return nf, tonumber(redis.call('HGET', skey, 'nx') or 0)
end
