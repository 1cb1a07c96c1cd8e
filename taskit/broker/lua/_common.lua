-- Shared helpers, pasted by the script registry where a command script says `-- @include _common.lua`.
-- Never loaded on its own. Expects `local rcall = redis.call` above the include.
--
-- A live job's state is one string in the state hash, fields joined by '|', the queue name last
-- (it may itself contain '|'):
--   status|attempts|score|seq|token|cancel|sched|started|completed|failed|queue
-- score: the ready-set score (minus the priority); seq: the 16-digit FIFO sequence; token: the
-- current lease token ('' when none); cancel: '1' once cancel was requested; sched: the due time
-- as seconds text; started/completed/failed: server times in ms ('' when unset).

local STATE_PATTERN = '^' .. string.rep('([^|]*)|', 10) .. '(.*)$'
local WAKE_CAP = 16 -- wake tokens kept per queue: enough for a burst, bounded when nobody waits

-- Server time in integer milliseconds: the only clock any script reads.
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The state of job `id`, as a table, or nil when there is no (well-formed) live record.
local function load_state(state_key, id)
  local raw = rcall('HGET', state_key, id)
  if not raw then
    return nil
  end
  local s = {}
  s.status, s.attempts, s.score, s.seq, s.token, s.cancel, s.sched, s.started, s.completed,
    s.failed, s.queue = string.match(raw, STATE_PATTERN)
  if not s.status then
    return nil
  end
  s.attempts = tonumber(s.attempts) or 0
  return s
end

local function pack_state(s)
  return table.concat({s.status, s.attempts, s.score, s.seq, s.token, s.cancel, s.sched,
    s.started, s.completed, s.failed, s.queue}, '|')
end

-- Write `s` back and return the packed string (scripts hand it to the client).
local function save_state(state_key, id, s)
  local raw = pack_state(s)
  rcall('HSET', state_key, id, raw)
  return raw
end

local function ready_member(s, id)
  return s.seq .. ':' .. id
end

local function next_seq(seq_key)
  return string.format('%016d', rcall('INCR', seq_key))
end

-- Push up to `n` wake-up tokens for workers blocked on this queue (BLPOP), never past WAKE_CAP.
local function wake(wake_key, n)
  local room = WAKE_CAP - rcall('LLEN', wake_key)
  for _ = 1, math.min(n, room) do
    rcall('RPUSH', wake_key, '1')
  end
end

-- Wake blocked workers when `id` became the earliest delayed job: their wait is now too long.
local function wake_if_earliest(delayed_key, wake_key, id)
  local first = rcall('ZRANGE', delayed_key, 0, 0)
  if first[1] == id then
    wake(wake_key, 1)
  end
end

-- Move up to `batch` due jobs from the delayed set to the ready set.
local function promote(state_key, ready_key, delayed_key, now, batch)
  local due = rcall('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    rcall('ZREM', delayed_key, id)
    local s = load_state(state_key, id)
    if s and (s.status == 'scheduled' or s.status == 'retrying') then
      s.status = 'pending'
      save_state(state_key, id, s)
      rcall('ZADD', ready_key, s.score, ready_member(s, id))
    end
  end
end

-- The msgpack of [text, etype, nil], as the client writes errors (short strings only).
local function mp_error(text, etype)
  local function str(v)
    if #v < 32 then
      return string.char(160 + #v) .. v
    elseif #v < 256 then
      return '\217' .. string.char(#v) .. v
    end
    return '\218' .. string.char(math.floor(#v / 256) % 256, #v % 256) .. v
  end
  return '\147' .. str(text) .. str(etype) .. '\192'
end

-- End a live job: its record moves to its own key `done_key`, which expires after `ttl` ms.
-- K = {spec=, state=, err=, done=, totals=}; `result` is the msgpack JobResult or ''.
local function finish(K, id, s, status, now, ttl, result)
  s.status = status
  s.completed = now
  s.token = ''
  local spec = rcall('HGET', K.spec, id) or ''
  local err = rcall('HGET', K.err, id) or ''
  rcall('DEL', K.done)
  rcall('HSET', K.done, 'spec', spec, 'state', pack_state(s), 'err', err, 'res', result)
  rcall('PEXPIRE', K.done, ttl)
  rcall('HDEL', K.spec, id)
  rcall('HDEL', K.state, id)
  rcall('HDEL', K.err, id)
  if status == 'completed' or status == 'failed' then
    rcall('HINCRBY', K.totals, status, 1)
  end
end

-- Lease job `id` (state `s`) under `token` until `deadline` and append its reply row
-- {q, id, spec, state, error} to `out`. K = {spec=, state=, err=, leases=}.
local function hand_out(K, out, q, id, s, token, deadline)
  s.token = token
  local raw = save_state(K.state, id, s)
  rcall('ZADD', K.leases, deadline, id)
  for _, v in ipairs({q, id, rcall('HGET', K.spec, id) or '', raw,
      rcall('HGET', K.err, id) or ''}) do
    out[#out + 1] = v
  end
end
