-- Limits (taskit.limits) inside the scripts: pasted after _common.lua and _msgpack.lua (its
-- reader of a job's spec) by `-- @include _limits.lua`.
--
-- A job's limit keys are read from its spec (Job.limits, an array of text in the msgpack spec),
-- so a job without limits costs one comparison of its spec's last bytes. Fixed keys only (all
-- under the prefix's hash tag), passed as L = {specs=, holding=, waiting=, held=, freed=, rate=,
-- queued=}:
--   specs    hash  limit name -> '<concurrency>|<rate>|<per ms>|<burst>' ('' for none)
--   holding  zset  '<limit key>\0<id>' of every job holding a slot (scores 0: ordered by member)
--   waiting  zset  '<limit key>\0<seq, 20 digits>\0<id>' of jobs held back by a full key (FIFO)
--   held     hash  id -> '<seq>' or '<seq>\0<limit key>' (waiting): a held-back job's place in
--            line, kept until it starts, so a job that has to wait again keeps its place;
--            then, while it runs, '!<limit key>\0<limit key>...': the slots it holds, which its
--            settle frees (so a settle never reads the job's spec for them)
--   freed    zset  '<queue>\0<seq>\0<id>' of jobs out of line, due back in their queue at the
--            next reserve of that queue (a release cannot name another queue's keys)
--   rate     zset  rate limit key scored by its theoretical arrival time (ms, GCRA); keys whose
--            time has passed are swept (they allow a full burst, as a missing key does)
--   queued   hash  queue -> how many of its jobs are held back (in a line or freed): stats count
--            them as queued, as they are PENDING

local HOLD_CAP = 100 -- jobs one reserve call may hold back before it stops looking
local SPEC_LIMITS = 25 -- the place of Job.limits in a spec array (its tag first), see job.py
-- A spec ending in progress None, limits (), then group, dedup, workflow and after all None: a
-- job with no limits (the common case, decided without parsing the spec). No spec with a limit
-- key ends the same way: the tail starts with the 0xc0 of progress, and 0xc0 never occurs in
-- UTF-8 text. tests/test_wire.py pins it to the bytes job.py writes.
local NO_LIMITS_TAIL = '\192\144\192\192\192\192'
local SEQ_WIDTH = 20
-- The types of L's keys, in the order scripts take them (specs, holding, waiting, held, freed,
-- rate, queued): for layout_fault.
-- '?': usually none exists (see layout_fault).
local LIMIT_KINDS = {'?hash', '?zset', '?zset', '?hash', '?zset', '?zset', '?hash'}

-- Count `n` more (or fewer) jobs of `queue` held back; a count back at 0 is deleted.
local function count_held(L, queue, n)
  if rcall('HINCRBY', L.queued, queue, n) <= 0 then
    rcall('HDEL', L.queued, queue)
  end
end

-- The limit keys spec `spec` names (Job.limits), or nil for none (or a spec that is not one).
local function job_limits(spec)
  if string.sub(spec, -#NO_LIMITS_TAIL) == NO_LIMITS_TAIL then
    return nil
  end
  local count, i = mp_item(spec, 1)
  if count == nil or count < SPEC_LIMITS then
    return nil -- a spec written before limits existed
  end
  i = mp_skip(spec, i, SPEC_LIMITS - 1) -- the fields before limits, each with all it holds
  local first = string.byte(spec, i or 0)
  if first ~= 0x90 and not (first and first > 0x90 and first <= 0x9f) and first ~= 0xdc then
    return nil
  end
  local n
  n, i = mp_item(spec, i)
  local keys = {}
  for k = 1, n do
    local inner, after, start = mp_item(spec, i)
    if inner ~= 0 then
      return nil
    end
    keys[k] = string.sub(spec, start, after - 1)
    i = after
  end
  return #keys > 0 and keys or nil
end

-- The definition of limit `name` ({c=, r=, per=, burst=}, numbers or nil), or nil (none stored:
-- the limit holds nothing back). Read once per script call (cached in L).
local function limit_spec(L, name)
  L.cache = L.cache or {}
  local spec = L.cache[name]
  if spec == nil then
    spec = false
    local raw = rcall('HGET', L.specs, name)
    if raw then
      local c, r, per, burst = string.match(raw, '^(%d*)|(%d*)|([%d%.]*)|(%d*)$')
      if c then
        spec = {c = tonumber(c), r = tonumber(r), per = tonumber(per), burst = tonumber(burst)}
        spec.burst = spec.burst or spec.r
      end
    end
    L.cache[name] = spec
  end
  return spec or nil
end

local function name_of(key)
  return string.match(key, '^[^:]*')
end

-- The lex range of the members of a zset (holding, waiting, freed) that start with `head`.
local function range_of(head)
  return '[' .. head .. '\0', '(' .. head .. '\1'
end

local function in_use(L, key)
  local low, high = range_of(key)
  return rcall('ZLEXCOUNT', L.holding, low, high)
end

-- When rate key `key` (definition `spec`) allows its next start: one start each per/rate ms,
-- up to `burst` at once after an idle time (GCRA), and the interval.
-- The third answer is the time the start is counted from: a start that comes less than one
-- interval (and under CATCH_UP ms) after its key's arrival time counts from that time, so a
-- worker that wakes a little late does not push every later start back (lateness does not add
-- up); any later, from now.
local CATCH_UP = 1000
local function allowed_at(L, key, spec, now)
  if not L.swept then -- keys whose time passed long ago allow a full burst, like a missing key
    rcall('ZREMRANGEBYSCORE', L.rate, '-inf', '(' .. (now - CATCH_UP))
    L.swept = true
  end
  local interval = spec.per / spec.r
  local stored = tonumber(rcall('ZSCORE', L.rate, key) or now)
  local tat = math.max(stored, now)
  local from = tat
  if stored < now and now - stored < math.min(interval, CATCH_UP) then
    from = stored
  end
  return tat - (spec.burst - 1) * interval, from, interval
end

-- Whether job `id` (limit keys `keys`) may start now: all or none. 'go': it took a slot in each
-- concurrency key and a start in each rate key; 'wait' and the first full key; 'later' and when
-- its rates allow it (nothing taken).
local function limit_gate(L, id, keys, now)
  local due, starts = nil, {}
  for _, key in ipairs(keys) do
    local spec = limit_spec(L, name_of(key))
    if spec and spec.c and in_use(L, key) >= spec.c then
      return 'wait', key
    end
    if spec and spec.r then
      local allowed, tat, interval = allowed_at(L, key, spec, now)
      if allowed > now then
        due = math.max(due or 0, allowed)
      end
      starts[#starts + 1] = {key, tat + interval}
    end
  end
  if due then
    return 'later', math.ceil(due)
  end
  local slots = {}
  for _, key in ipairs(keys) do
    local spec = limit_spec(L, name_of(key))
    if spec and spec.c then
      rcall('ZADD', L.holding, 0, key .. '\0' .. id)
      slots[#slots + 1] = key
    end
  end
  for _, start in ipairs(starts) do
    rcall('ZADD', L.rate, start[2], start[1])
  end
  if #slots > 0 then -- what it holds, for its settle to free without reading its spec again
    rcall('HSET', L.held, id, '!' .. table.concat(slots, '\0'))
    L.any_held = true
  else
    if L.any_held == nil then -- read once a call: usually no job was ever held back
      L.any_held = rcall('EXISTS', L.held) == 1
    end
    if L.any_held then
      rcall('HDEL', L.held, id)
    end
  end
  return 'go'
end

-- A popped pending job `id` (state `s`) passes its limits: true, it holds its slots (lease it).
-- Else it is held back, no attempt spent: in its full key's line, or delayed until its rate
-- allows a start (Q = {delayed=, wake=} of its queue). Answers true at once for a job with no
-- limits (its spec's last bytes say so).
local function limits_pass(L, Q, id, s, now)
  local keys = job_limits(s.spec)
  if keys == nil then
    return true
  end
  local verdict, arg = limit_gate(L, id, keys, now)
  if verdict == 'wait' then
    local seq = string.match(rcall('HGET', L.held, id) or '', '^%d+')
    seq = seq or string.format('%0' .. SEQ_WIDTH .. 'd', rcall('INCR', L.seq))
    rcall('ZADD', L.waiting, 0, arg .. '\0' .. seq .. '\0' .. id)
    rcall('HSET', L.held, id, seq .. '\0' .. arg)
    L.any_held = true
    count_held(L, s.queue, 1)
  elseif verdict == 'later' then
    s.status = 'scheduled'
    s.sched = string.format('%.3f', arg / 1000)
    save_state(L.jobs, id, s)
    rcall('ZADD', Q.delayed, arg, id)
    wake_if_earliest(Q.delayed, Q.wake, id)
  end
  return verdict == 'go'
end

-- Take up to `most` (nil: as many as the slots allow) jobs out of key `key`'s line, into the
-- freed set of their queues; each queue is noted in L.woken (the caller wakes it).
local function free_waiting(L, key, most)
  local low, high = range_of(key)
  if #rcall('ZRANGEBYLEX', L.waiting, low, high, 'LIMIT', 0, 1) == 0 then
    return -- nobody in line (the common case: one read)
  end
  local spec = limit_spec(L, name_of(key))
  local room = most or -1
  if spec and spec.c then
    room = math.max(spec.c - in_use(L, key), 0)
    if most then
      room = math.min(room, most)
    end
  end
  if room == 0 then
    return
  end
  for _, m in ipairs(rcall('ZRANGEBYLEX', L.waiting, low, high, 'LIMIT', 0, room)) do
    rcall('ZREM', L.waiting, m)
    local seq = string.sub(m, #key + 2, #key + 1 + SEQ_WIDTH)
    local id = string.sub(m, #key + SEQ_WIDTH + 3)
    local s = load_state(L.jobs, id)
    if s and s.status == 'pending' then
      rcall('ZADD', L.freed, 0, s.queue .. '\0' .. seq .. '\0' .. id)
      rcall('HSET', L.held, id, seq)
      L.woken = L.woken or {}
      L.woken[s.queue] = true
    else
      rcall('HDEL', L.held, id)
    end
  end
end

-- Job `id` (spec `spec`) stops holding its slots (the keys its held entry names, '!k1\0k2...'):
-- each slot freed lets the next job of that key out of line (free_waiting). Idempotent.
local function limits_release(L, id, spec)
  if string.sub(spec, -#NO_LIMITS_TAIL) == NO_LIMITS_TAIL then
    return
  end
  local held = rcall('HGET', L.held, id)
  if not held or string.byte(held, 1) ~= 33 then -- '!': the slots of a running job
    return
  end
  rcall('HDEL', L.held, id)
  local from = 2
  while from <= #held do
    local at = string.find(held, '\0', from, true) or (#held + 1)
    local key = string.sub(held, from, at - 1)
    if rcall('ZREM', L.holding, key .. '\0' .. id) == 1 then
      free_waiting(L, key, 1)
    end
    from = at + 1
  end
end

-- Job `id` (state `s`) leaves the broker while not running (cancel, purge): out of any line or
-- freed set. True if it was out of its queue's ready structures (waiting or freed).
local function limits_forget(L, id, s)
  local held = rcall('HGET', L.held, id)
  if not held then
    return false
  end
  rcall('HDEL', L.held, id)
  if string.byte(held, 1) == 33 then -- '!': slots of a run (a settle frees them), not a line
    return false
  end
  local at = string.find(held, '\0', 1, true)
  local out
  if at then -- '<seq>\0<limit key>': in that key's line
    local member = string.sub(held, at + 1) .. '\0' .. string.sub(held, 1, at - 1) .. '\0' .. id
    out = rcall('ZREM', L.waiting, member) == 1
  else
    out = rcall('ZREM', L.freed, s.queue .. '\0' .. held .. '\0' .. id) == 1
  end
  if out then
    count_held(L, s.queue, -1)
  end
  return out
end

-- Put the freed jobs of `queue` back at the front of its ready structures R (oldest first).
local function limits_return(L, R, queue, batch)
  if not L.any_freed then
    return
  end
  local low, high = range_of(queue)
  local members = rcall('ZRANGEBYLEX', L.freed, low, high, 'LIMIT', 0, batch)
  for j = #members, 1, -1 do
    local m = members[j]
    local id = string.sub(m, #queue + SEQ_WIDTH + 3)
    local s = load_state(L.jobs, id)
    if string.byte(m, #queue + SEQ_WIDTH + 2) == 0 and s and s.queue == queue then
      rcall('ZREM', L.freed, m)
      count_held(L, queue, -1)
      if s.status == 'pending' then
        make_ready(R, id, s, true)
        save_state(L.jobs, id, s)
      end
    elseif s == nil then
      rcall('ZREM', L.freed, m) -- its job is gone
    end -- else a member of a queue whose name starts with this one's and a NUL
  end
end

-- The queue names L.woken collected (for the caller to wake), as a list.
local function limits_woken(L)
  local names = {}
  for queue in pairs(L.woken or {}) do
    names[#names + 1] = queue
  end
  table.sort(names)
  return names
end

-- Append to `ids` up to `n` jobs of `queue` held back by their limits (freed, or in a line),
-- taken out of those structures (purge).
local function limits_held_of(L, queue, n, ids)
  local low, high = range_of(queue)
  for _, m in ipairs(rcall('ZRANGEBYLEX', L.freed, low, high, 'LIMIT', 0, n)) do
    local id = string.sub(m, #queue + SEQ_WIDTH + 3)
    local s = load_state(L.jobs, id)
    if string.byte(m, #queue + SEQ_WIDTH + 2) == 0 and s and s.queue == queue then
      rcall('ZREM', L.freed, m)
      count_held(L, queue, -1)
      ids[#ids + 1] = id
      n = n - 1
    end
  end
  if n <= 0 or rcall('EXISTS', L.waiting) == 0 then
    return
  end
  for _, m in ipairs(rcall('ZRANGE', L.waiting, 0, -1)) do
    local at = string.find(m, '\0', 1, true)
    local id = string.sub(m, at + SEQ_WIDTH + 2)
    local s = load_state(L.jobs, id)
    if s and s.queue == queue then
      rcall('ZREM', L.waiting, m)
      count_held(L, queue, -1)
      ids[#ids + 1] = id
      n = n - 1
      if n == 0 then
        return
      end
    end
  end
end
