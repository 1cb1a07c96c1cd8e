-- Shared helpers, pasted by the script registry where a command script says `-- @include _common.lua`.
-- Never loaded on its own. Expects `local rcall = redis.call` above the include.
--
-- A live job is one field of the jobs hash: '<n>:<state><spec>', where n is the length of the
-- state string and spec the encoded Job as enqueued. The state is fields joined by '|', the queue
-- name last (it may itself contain '|'):
--   status|attempts|score|seq|token|cancel|sched|started|completed|failed|queue
-- score: minus the priority ('0' for the default priority); seq: for a job of another priority,
-- its place in the ranked set ('' otherwise); token: the current lease token of a running job,
-- else '' or the mark '=<token>:<kind>' of the settle that ended its last lease (see settle);
-- cancel: '1' once cancel was requested; sched: the due time as seconds text;
-- started/completed/failed: server times in ms ('' when unset).
--
-- A queue's ready jobs of the default priority wait in its FIFO list (the job id only); jobs of
-- any other priority wait in its ranked set, scored by minus the priority, member '<seq>:<id>'.

local STATE_PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|' ..
  '([^|]*)|([^|]*)|(.*)$' -- ten fields ending in '|', then the queue
local WAKE_CAP = 16 -- wake tokens kept per queue: enough for a burst, bounded when nobody waits
local CHUNK = 500 -- values per variadic command (Lua's unpack has a stack limit)

-- Server time in integer milliseconds: the only clock any script reads.
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A record's state table (with its spec as `s.spec`), or nil when `raw` is not well-formed.
local function parse_record(raw)
  local n, at = string.match(raw, '^(%d+):()')
  if not n then
    return nil
  end
  local s = {}
  s.status, s.attempts, s.score, s.seq, s.token, s.cancel, s.sched, s.started, s.completed,
    s.failed, s.queue = string.match(string.sub(raw, at, at + n - 1), STATE_PATTERN)
  if not s.status then
    return nil
  end
  s.attempts = tonumber(s.attempts) or 0
  s.spec = string.sub(raw, at + n)
  return s
end

-- The live record of job `id`, as a table, or nil when there is no (well-formed) record.
local function load_state(jobs_key, id)
  local raw = rcall('HGET', jobs_key, id)
  if not raw then
    return nil
  end
  return parse_record(raw)
end

local function pack_state(s)
  return table.concat({s.status, s.attempts, s.score, s.seq, s.token, s.cancel, s.sched,
    s.started, s.completed, s.failed, s.queue}, '|')
end

-- The record string of `s` (its state and spec), and the state string alone.
local function pack_record(s)
  local state = pack_state(s)
  return #state .. ':' .. state .. s.spec, state
end

-- Write `s` back and return the packed state string (scripts hand it to the client).
local function save_state(jobs_key, id, s)
  local raw, state = pack_record(s)
  rcall('HSET', jobs_key, id, raw)
  return state
end

-- `cmd key v1 v2 ...` for every value of `values`, in chunks.
local function each_chunk(cmd, key, values)
  for i = 1, #values, CHUNK do
    rcall(cmd, key, unpack(values, i, math.min(i + CHUNK - 1, #values)))
  end
end

-- The ranked-set member of a job of a non-default priority.
local function ranked_member(s, id)
  return s.seq .. ':' .. id
end

-- Make pending job `id` ready in its queue: R = {fifo=, ranked=, seq=}. At the back of its
-- priority, or at the front when `front` (a release or an immediate retry: next to run).
local function make_ready(R, id, s, front)
  if s.score == '0' then
    s.seq = ''
    rcall(front and 'LPUSH' or 'RPUSH', R.fifo, id)
    return
  end
  local n = rcall('INCR', R.seq)
  if front then -- '-' sorts before digits; later fronts sort first
    s.seq = '-' .. string.format('%015d', 999999999999999 - n)
  else
    s.seq = string.format('%016d', n)
  end
  rcall('ZADD', R.ranked, s.score, ranked_member(s, id))
end

-- Take pending job `id` out of its queue's ready structures (O(n) in the FIFO list's length).
local function unready(R, id, s)
  if s.score == '0' then
    rcall('LREM', R.fifo, 1, id)
  else
    rcall('ZREM', R.ranked, ranked_member(s, id))
  end
end

-- Up to `n` ready job ids of one queue, removed, in the order they run: higher priorities,
-- then the default priority (FIFO), then lower ones.
local function pop_ready(R, n)
  local ids = {}
  local function from_ranked(members)
    for _, m in ipairs(members) do
      ids[#ids + 1] = string.match(m, '^[^:]*:(.*)$')
    end
  end
  local high = rcall('ZRANGEBYSCORE', R.ranked, '-inf', '(0', 'LIMIT', 0, n)
  if #high > 0 then
    rcall('ZREMRANGEBYRANK', R.ranked, 0, #high - 1)
    from_ranked(high)
  end
  if #ids < n then
    local got = rcall('LRANGE', R.fifo, 0, n - #ids - 1)
    if #got > 0 then
      rcall('LTRIM', R.fifo, #got, -1)
      for _, id in ipairs(got) do
        ids[#ids + 1] = id
      end
    end
  end
  if #ids < n then
    local low = rcall('ZRANGE', R.ranked, 0, n - #ids - 1)
    if #low > 0 then
      rcall('ZREMRANGEBYRANK', R.ranked, 0, #low - 1)
      from_ranked(low)
    end
  end
  return ids
end

local function ready_count(R)
  return rcall('LLEN', R.fifo) + rcall('ZCARD', R.ranked)
end

-- Push up to `n` wake-up tokens for workers blocked on this queue (BLPOP), never past WAKE_CAP.
local function wake(wake_key, n)
  local room = math.min(n, WAKE_CAP - rcall('LLEN', wake_key))
  if room > 0 then
    local tokens = {}
    for i = 1, room do
      tokens[i] = '1'
    end
    rcall('RPUSH', wake_key, unpack(tokens))
  end
end

-- Wake blocked workers when `id` became the earliest delayed job: their wait is now too long.
local function wake_if_earliest(delayed_key, wake_key, id)
  local first = rcall('ZRANGE', delayed_key, 0, 0)
  if first[1] == id then
    wake(wake_key, 1)
  end
end

-- Move up to `batch` due jobs from the delayed set to the ready structures R (see make_ready).
local function promote(jobs_key, R, delayed_key, now, batch)
  local due = rcall('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, batch)
  if #due == 0 then
    return
  end
  each_chunk('ZREM', delayed_key, due)
  for _, id in ipairs(due) do
    local s = load_state(jobs_key, id)
    if s and (s.status == 'scheduled' or s.status == 'retrying') then
      s.status = 'pending'
      make_ready(R, id, s, false)
      save_state(jobs_key, id, s)
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
-- K = {jobs=, err=, done=, totals=, mark=}; `result` is the msgpack JobResult or ''; `mark`
-- (optional) the settle's mark, kept in the token field.
local function finish(K, id, s, status, now, ttl, result)
  s.status = status
  s.completed = now
  s.token = K.mark or ''
  local err = rcall('HGET', K.err, id) or ''
  rcall('DEL', K.done)
  rcall('HSET', K.done, 'spec', s.spec, 'state', pack_state(s), 'err', err, 'res', result)
  rcall('PEXPIRE', K.done, ttl)
  rcall('HDEL', K.jobs, id)
  rcall('HDEL', K.err, id)
  if status == 'completed' or status == 'failed' then
    rcall('HINCRBY', K.totals, status, 1)
  end
end

-- Lease job `id` (state `s`) under `token` until `deadline` and append its reply row
-- {q, id, spec, state, error} to `out`. K = {jobs=, err=, leases=}.
local function hand_out(K, out, q, id, s, token, deadline)
  s.token = token
  local state = save_state(K.jobs, id, s)
  rcall('ZADD', K.leases, deadline, id)
  for _, v in ipairs({q, id, s.spec, state, rcall('HGET', K.err, id) or ''}) do
    out[#out + 1] = v
  end
end
