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
-- The same fields, each numeric one well formed (what state_fault checks with a pattern): a
-- state it matches needs only its lengths, status, seq and sched checked (see parse_record).
local STATE_STRICT = '^(%l[%l_]*)|(%d+)|(%-?%d+)|(%-?%d*)|([^|]*)|(1?)|([^|]*)|(%d*)|(%d*)|' ..
  '(%d*)|(.*)$'
local WAKE_CAP = 16 -- wake tokens kept per queue: enough for a burst, bounded when nobody waits
local CHUNK = 500 -- values per variadic command (Lua's unpack has a stack limit)

-- Let the rest of this script run even when Redis is out of memory (over maxmemory, nothing to
-- evict). Redis refuses a script at its first command that may grow memory (HSET, ZADD, RPUSH,
-- INCR...) only if no write came before it: once a script has written, it runs to the end, as
-- stopping halfway would break its atomicity (Redis 6 and 7 alike). PERSIST is a write that never
-- grows memory and here changes nothing (`key` never carries a TTL). Called first by every script
-- that only ends, frees or moves jobs already stored, so a full Redis still settles, reclaims,
-- extends and cancels them; never by enqueue, which must be refused whole (its first write grows).
-- (A `#!lua flags=allow-oom` shebang does the same on Redis 7 only: Redis 6 cannot load it.)
local function allow_oom(key)
  rcall('PERSIST', key)
end

-- Server time in integer milliseconds: the only clock any script reads.
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local STATUSES = {pending = true, scheduled = true, running = true, completed = true,
  failed = true, retrying = true, dead_letter = true, cancelled = true, deferred = true}

-- Whether `v` is up to `width` decimal digits ('-' first when `signed`), or '' when `empty`.
local function is_int(v, width, signed, empty)
  if v == '' then
    return empty
  end
  return #v <= width and string.match(v, signed and '^%-?%d+$' or '^%d+$') ~= nil
end

-- Whether `v` is '' or a finite number >= 0 as plain text (no hex, spaces, inf or nan).
local function is_seconds(v)
  if v == '' then
    return true
  end
  local x = #v <= 40 and string.match(v, '^[%d%.eE+-]+$') and tonumber(v)
  return x ~= nil and x == x and x >= 0 and x < math.huge
end

-- The first field of state `s` that holds a value this layout never writes, or nil. Scripts do
-- arithmetic and commands with these fields: a bad one must make the record unreadable (a dead
-- letter with a reason), never a script error that fails the call for every other job.
local function state_fault(s)
  -- The common case first, in one match: every numeric field well formed.
  if STATUSES[s.status] and #s.attempts <= 9 and #s.score <= 21 and #s.seq <= 21
      and #s.started <= 20 and #s.completed <= 20 and #s.failed <= 20 and s.seq ~= '-'
      and (s.cancel == '' or s.cancel == '1') and (s.sched == '' or is_seconds(s.sched))
      and string.find(s.attempts .. '|' .. s.score .. '|' .. s.seq .. '|' .. s.started .. '|' ..
        s.completed .. '|' .. s.failed, '^%d+|%-?%d+|%-?%d*|%d*|%d*|%d*$') then
    return nil
  end
  if not STATUSES[s.status] then
    return 'status', s.status
  elseif not is_int(s.attempts, 9, false, false) then
    return 'attempts', s.attempts
  elseif not is_int(s.score, 21, true, false) then
    return 'score', s.score
  elseif not is_int(s.seq, 21, true, true) then
    return 'seq', s.seq
  elseif s.cancel ~= '' and s.cancel ~= '1' then
    return 'cancel', s.cancel
  elseif not is_seconds(s.sched) then
    return 'sched', s.sched
  end
  for _, f in ipairs({'started', 'completed', 'failed'}) do
    if not is_int(s[f], 20, false, true) then
      return f, s[f]
    end
  end
  return nil
end

-- A short printable quote of stored bytes, for an error message (always valid UTF-8).
local function quote(v)
  return "'" .. string.gsub(string.sub(v, 1, 40), '[^%w%.%-+_:]', '?') .. "'"
end

-- Why a key of KEYS holds another type than this layout keeps there (TYPE's names; a missing
-- key is fine), as an error text for redis.error_reply, or nil. KEYS is laid out as the kinds
-- `head`, then the kinds `per` once for each of `nq` queues; keys after those (done keys, which
-- finish deletes first) and '*' kinds may hold anything. One TYPE per other key a call, except
-- for kinds marked '?' (keys that usually do not exist: limits, priorities, delays, groups):
-- one EXISTS of all of those first, and their TYPEs only when one of them exists. A script that takes entries out of one
-- structure and writes them to another checks first: Redis keeps a script's writes up to an
-- error, so a write refused midway (WRONGTYPE) would leave what it took out in no structure.
-- (Lean on purpose: every Lua operation costs Redis tens of instructions and every library
-- call hundreds, for each of a call's 20 or more keys; one pass, kinds looked up, no string
-- functions. A damaged key of a '?' kind is named only when no other kind is damaged.)
-- With no fault, its second answer is whether no key of a '?' kind exists (the caller may
-- skip reading them until it writes one).
local function kind_fault(key, want)
  local kind = rcall('TYPE', key).ok
  if kind ~= 'none' and kind ~= want then
    return 'WRONGTYPE damaged data: key \'' .. key .. '\' holds a ' .. kind ..
      ' where taskit keeps a ' .. want .. ' (not written by taskit: repair or delete it);' ..
      ' nothing was changed'
  end
  return nil
end

local RARE_KINDS = {['?hash'] = 'hash', ['?zset'] = 'zset', ['?list'] = 'list',
  ['?string'] = 'string', ['?set'] = 'set'}

local function layout_fault(head, per, nq)
  local rare, wants, n = {}, {}, 0 -- the keys of '?' kinds, and their kinds
  local nh, np = #head, #per
  for i = 1, nh + np * nq do
    local want = i <= nh and head[i] or per[(i - nh - 1) % np + 1]
    local maybe = RARE_KINDS[want]
    if maybe then
      n = n + 1
      rare[n], wants[n] = KEYS[i], maybe
    elseif want ~= '*' then
      local fault = kind_fault(KEYS[i], want)
      if fault then
        return fault
      end
    end
  end
  for i = 1, n, CHUNK do
    if rcall('EXISTS', unpack(rare, i, math.min(i + CHUNK - 1, n))) > 0 then
      for j = 1, n do
        local fault = kind_fault(rare[j], wants[j])
        if fault then
          return fault
        end
      end
      return nil, false
    end
  end
  return nil, true
end

-- A record's state table (with its spec as `s.spec`), or nil and why it is unreadable.
local function parse_record(raw)
  local n, at = string.match(raw, '^(%d+):()')
  if not n or #n > 9 or tonumber(n) > #raw - at + 1 then
    return nil, 'record: no state length prefix ' .. quote(raw)
  end
  local state = string.sub(raw, at, at + n - 1)
  -- The common case first: the strict pattern, and one constructor (a table that grows
  -- field by field is rebuilt four times; Redis pays tens of instructions a Lua operation).
  local st, a, score, seq, token, cancel, sched, started, completed, failed, queue =
    string.match(state, STATE_STRICT)
  if st and STATUSES[st] and #a <= 9 and #score <= 21 and #seq <= 21 and seq ~= '-'
      and #started <= 20 and #completed <= 20 and #failed <= 20
      and (sched == '' or is_seconds(sched)) then
    return {status = st, attempts = tonumber(a), score = score, seq = seq, token = token,
      cancel = cancel, sched = sched, started = started, completed = completed, failed = failed,
      queue = queue, spec = string.sub(raw, at + n)}
  end
  local s = {}
  s.status, s.attempts, s.score, s.seq, s.token, s.cancel, s.sched, s.started, s.completed,
    s.failed, s.queue = string.match(state, STATE_PATTERN)
  if not s.status then
    return nil, 'state: not 11 fields ' .. quote(state)
  end
  local field, value = state_fault(s)
  if field then
    return nil, field .. ' ' .. quote(value)
  end
  s.attempts = tonumber(s.attempts)
  s.spec = string.sub(raw, at + n)
  return s
end

-- The live record of job `id`, as a table; nil when there is none, and nil plus why when it is
-- unreadable (see parse_record).
local function load_state(jobs_key, id)
  local raw = rcall('HGET', jobs_key, id)
  if not raw then
    return nil
  end
  return parse_record(raw)
end

-- (One concatenation, no table: Redis pays tens of instructions a Lua operation.)
local function pack_state(s)
  return s.status .. '|' .. s.attempts .. '|' .. s.score .. '|' .. s.seq .. '|' .. s.token ..
    '|' .. s.cancel .. '|' .. s.sched .. '|' .. s.started .. '|' .. s.completed .. '|' ..
    s.failed .. '|' .. s.queue
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

-- `cmd key v1 v2 ...` for every value of `values`, in chunks. An error names `cmd`: an ACL
-- refusal inside a script names no command, and this line alone cannot show it.
local function each_chunk(cmd, key, values)
  for i = 1, #values, CHUNK do
    local reply = redis.pcall(cmd, key, unpack(values, i, math.min(i + CHUNK - 1, #values)))
    if type(reply) == 'table' and reply.err then
      error({err = reply.err .. ' (' .. cmd .. ')'})
    end
  end
end

-- The ranked-set member of a job of a non-default priority.
local function ranked_member(s, id)
  return s.seq .. ':' .. id
end

-- Fair turns. A ready job of the default priority that has a group (its fairness key) waits in
-- its queue's group set R.groups, member '<group>\0<seq>\0<id>' (score 0: ordered by member,
-- so by group, then FIFO by seq), not in the FIFO list. The turns list R.turns holds each group
-- with ready jobs once, plus '\0' for the ungrouped jobs (the FIFO list), which take one turn
-- like a group; it is empty (deleted) while no group has ready jobs, so a queue without groups
-- pays one LLEN per pop_ready. A turn is taken with RPOPLPUSH (works on Redis 6.0, where LMOVE
-- does not exist): the next turn is at the right end and moves to the left end. The group hash
-- R.groupof maps each live grouped job to its group, for as long as its record lives. A grouped
-- job's state keeps digits in its seq field (its place in the group set when ready, '0' before
-- it ever was): score '0' and a seq other than '' is how a script knows a job is grouped
-- without reading anything.

local function grouped(s)
  return s.score == '0' and s.seq ~= ''
end

local function group_member(group, seq, id)
  return group .. '\0' .. seq .. '\0' .. id
end

-- The number of ready jobs of `group` in group set `groups`.
local function group_size(groups, group)
  return rcall('ZLEXCOUNT', groups, '[' .. group .. '\0', '(' .. group .. '\1')
end

-- Make grouped job `id` ready (see make_ready); `group` if the caller knows it.
local function group_ready(R, id, s, front, group)
  group = group or rcall('HGET', R.groupof, id)
  if not group then -- its group entry is gone (damaged data): served as an ungrouped job
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
  rcall('ZADD', R.groups, 0, group_member(group, s.seq, id))
  if group_size(R.groups, group) == 1 then -- the group enters the turns
    if rcall('LLEN', R.turns) == 0 then
      rcall('LPUSH', R.turns, '\0')
    end
    rcall(front and 'RPUSH' or 'LPUSH', R.turns, group) -- next turn, or after a full round
  end
end

-- Take grouped job `id` (pending) out of its group; its group leaves the turns with its last job.
local function group_unready(R, id, s)
  local group = rcall('HGET', R.groupof, id)
  if not group then
    rcall('LREM', R.fifo, 1, id) -- made ready as an ungrouped job (see group_ready)
    return
  end
  rcall('ZREM', R.groups, group_member(group, s.seq, id))
  if group_size(R.groups, group) == 0 then
    rcall('LREM', R.turns, 1, group)
    if rcall('LLEN', R.turns) == 1 then
      rcall('DEL', R.turns) -- only the ungrouped turn is left
    end
  end
end

-- Up to `n` ready ids of the default priority taken in turns (appended to `ids`): one job of
-- the group whose turn it is (its oldest), or of the FIFO list for the '\0' turn. Bounded: a
-- damaged turns list costs at most 2n + 2 turns per call.
local function take_turns(R, n, ids)
  local want = #ids + n
  for _ = 1, 2 * n + 2 do
    if #ids >= want then
      return
    end
    local turn = rcall('RPOPLPUSH', R.turns, R.turns)
    if not turn then
      return
    elseif turn == '\0' then
      local id = rcall('LPOP', R.fifo)
      if id then
        ids[#ids + 1] = id
      elseif rcall('LLEN', R.turns) <= 1 then
        rcall('DEL', R.turns)
        return
      end
    else
      local got = rcall('ZRANGEBYLEX', R.groups, '[' .. turn .. '\0', '(' .. turn .. '\1',
        'LIMIT', 0, 2)
      if got[1] then
        rcall('ZREM', R.groups, got[1])
        ids[#ids + 1] = string.match(got[1], '^[^%z]*%z[^%z]*%z(.*)$')
      end
      if not got[2] then -- that was its last: the group leaves the turns (now at the left)
        rcall('LPOP', R.turns)
        if rcall('LLEN', R.turns) == 1 then
          rcall('DEL', R.turns)
        end
      end
    end
  end
end

-- Make pending job `id` ready in its queue: R = {fifo=, ranked=, seq=, groups=, turns=,
-- groupof=}. At the back of its priority (of its group), or at the front when `front` (a
-- release or an immediate retry: next to run). The one way a job becomes ready.
local function make_ready(R, id, s, front)
  if s.score == '0' then
    if s.seq ~= '' then
      group_ready(R, id, s, front)
      return
    end
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
  if grouped(s) then
    group_unready(R, id, s)
  elseif s.score == '0' then
    rcall('LREM', R.fifo, 1, id)
  else
    rcall('ZREM', R.ranked, ranked_member(s, id))
  end
end

-- Up to `n` ready job ids of one queue, removed, in the order they run: higher priorities,
-- then the default priority (FIFO, or in turns over its groups, see take_turns), then lower
-- ones. R.fifo_only (optional): the caller knows the queue's ranked set and turns list do not
-- exist (see layout_fault), so only its FIFO list is read.
local function pop_ready(R, n)
  if R.fifo_only then
    local got = rcall('LRANGE', R.fifo, '0', n - 1)
    if #got > 0 then
      rcall('LTRIM', R.fifo, #got, '-1')
    end
    return got
  end
  local ids = {}
  local function from_ranked(members)
    for _, m in ipairs(members) do
      ids[#ids + 1] = string.match(m, '^[^:]*:(.*)$')
    end
  end
  -- (Constant numbers as text: Redis formats a number given to a command with printf.)
  local high = rcall('ZRANGEBYSCORE', R.ranked, '-inf', '(0', 'LIMIT', '0', n)
  if #high > 0 then
    rcall('ZREMRANGEBYRANK', R.ranked, '0', #high - 1)
    from_ranked(high)
  end
  if #ids < n and rcall('LLEN', R.turns) > 0 then
    take_turns(R, n - #ids, ids)
  end
  if #ids < n then -- no turns, or they ended (no group has ready jobs left): plain FIFO
    local got = rcall('LRANGE', R.fifo, '0', n - #ids - 1)
    if #got > 0 then
      rcall('LTRIM', R.fifo, #got, '-1')
      for _, id in ipairs(got) do
        ids[#ids + 1] = id
      end
    end
  end
  if #ids < n then
    local low = rcall('ZRANGE', R.ranked, '0', n - #ids - 1)
    if #low > 0 then
      rcall('ZREMRANGEBYRANK', R.ranked, '0', #low - 1)
      from_ranked(low)
    end
  end
  return ids
end

local function ready_count(R)
  return rcall('LLEN', R.fifo) + rcall('ZCARD', R.ranked) + rcall('ZCARD', R.groups)
end

-- Whether the queue has a ready job: ready_count > 0, usually in one command.
local function has_ready(R)
  return rcall('LLEN', R.fifo) > 0 or rcall('ZCARD', R.ranked) > 0 or rcall('ZCARD', R.groups) > 0
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

-- What a script that includes _workflow.lua does when bury dead-letters a job (it ends for its
-- workflow, if it is a node of one); nil in the others.
local wf_buried = nil

-- Dead-letter job `id` of queue G.queue, whose record is missing or unreadable (`why`), so that
-- it is seen and can be requeued, never dropped and never a script error. It gets a fresh state
-- in that queue; its spec is kept as it was (the whole record when it cannot even be split; the
-- client shows a stand-in then), and `why` becomes its error. G = {jobs=, err=, seq=, dead=,
-- queue=, groupof=}; the caller has taken `id` out of the structure it found it in.
local function bury(G, id, why, now)
  redis.log(redis.LOG_WARNING, 'taskit: job ' .. quote(id) .. ' of queue ' .. quote(G.queue) ..
    ' dead-lettered, its record is unreadable: ' .. why)
  local raw = rcall('HGET', G.jobs, id) or ''
  local n, at = string.match(raw, '^(%d+):()')
  local spec = raw
  if n and #n <= 9 and tonumber(n) <= #raw - at + 1 then
    spec = string.sub(raw, at + n)
  end
  local s = {status = 'dead_letter', attempts = 1, score = '0', seq = '', token = '',
    cancel = '', sched = '', started = now, completed = now, failed = now, queue = G.queue,
    spec = spec} -- dead on its first attempt, as a job whose spec does not decode
  save_state(G.jobs, id, s)
  local err = mp_error('job record unreadable: ' .. why, 'CorruptJobError')
  rcall('HSET', G.err, id, err)
  rcall('ZADD', G.dead, rcall('INCR', G.seq), id)
  rcall('HDEL', G.groupof, id) -- its fresh state is ungrouped
  if wf_buried then
    wf_buried(G.jobs, id, err, now)
  end
end

-- Why live job `id` (state `s`, readable) is lost if the entry that led to it (in `found`) is
-- dropped: nil when the job also sits where its status puts it (the entry was a stray: drop it),
-- else the reason (the caller dead-letters it with bury, so that no job vanishes unseen).
-- P = {fifo=, ranked=, delayed=, leases=, dead=, groups=, groupof=} of the queue the entry was found in.
local function misplaced(P, id, s, found)
  local status, placed = s.status, false
  if status == 'running' then
    placed = rcall('ZSCORE', P.leases, id)
  elseif status == 'scheduled' or status == 'retrying' then
    placed = rcall('ZSCORE', P.delayed, id)
  elseif status == 'dead_letter' then
    placed = rcall('ZSCORE', P.dead, id)
  elseif status == 'pending' and grouped(s) then
    local group = rcall('HGET', P.groupof, id)
    placed = group and rcall('ZSCORE', P.groups, group_member(group, s.seq, id))
      or rcall('LPOS', P.fifo, id)
  elseif status == 'pending' and s.score == '0' then
    placed = rcall('LPOS', P.fifo, id) -- O(n), on this path of damaged data only
  elseif status == 'pending' then
    placed = rcall('ZSCORE', P.ranked, id)
  end
  if placed then
    return nil
  end
  return 'status ' .. quote(status) .. ' found in the ' .. found ..
    ', and the job is in no structure of that status'
end

-- Move up to `batch` due jobs from the delayed set P.delayed to the ready structures R (see
-- make_ready). A due job whose record is unreadable, or whose status has no business in the
-- delayed set and that is nowhere else, is dead-lettered: G = {jobs=, err=, seq=, dead=,
-- queue=}; P as for misplaced.
local function promote(G, R, P, now, batch)
  local due = rcall('ZRANGEBYSCORE', P.delayed, '-inf', now, 'LIMIT', '0', batch)
  if #due == 0 then
    return
  end
  each_chunk('ZREM', P.delayed, due)
  for _, id in ipairs(due) do
    local s, why = load_state(G.jobs, id)
    if s and not why and s.status ~= 'scheduled' and s.status ~= 'retrying' then
      why = misplaced(P, id, s, 'delayed set')
    end
    if why then
      bury(G, id, why, now)
    elseif s and (s.status == 'scheduled' or s.status == 'retrying') then
      s.status = 'pending'
      make_ready(R, id, s, false)
      save_state(G.jobs, id, s)
    end
  end
end

-- The finished-job indexes (browsing): a queue's zsets 'completed', 'failed' and 'cancelled'
-- hold the ids of its jobs that ended so, scored by their end (ms). Each is trimmed of entries
-- older than the broker's result TTL (`keep` ms) the first time a script call adds to it (the
-- clock does not move within a call), and expires `keep` after that call: an index of a queue
-- where nothing ends any more goes with the records it listed. One ZREMRANGEBYSCORE and one
-- PEXPIRE per index per call, one ZADD per job: O(log n) each.
local trimmed = {}

-- Index job `id`, ended now, in `index` (see above): the one place a finished job is listed
-- from, called by finish for every kept done key.
-- pcall: an index of another type (damaged data) must never fail the call that ends jobs.
local function index_ended(index, id, now, keep)
  redis.pcall('ZADD', index, now, id)
  if not trimmed[index] then
    trimmed[index] = true
    redis.pcall('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - keep))
    redis.pcall('PEXPIRE', index, math.max(keep, 1))
  end
end

-- End a live job: its record moves to its own key `done_key`, which expires after `ttl` ms
-- (0: no record is kept at all; K.ttl_text, optional, the same as text). `now` (ms) may be
-- text. K = {jobs=, err=, prog=, no_prog=, done=, totals=, mark=,
-- groupof=, completed=, failed=, cancelled=, keep=, tally=}: tally (optional) a table the caller
-- writes with tally_flush once a call, else the totals hash is counted at once; the last four the queue's finished-job
-- indexes and the broker's result TTL (ms; see index_ended); `result` is the msgpack JobResult
-- or ''; `mark` (optional) the settle's mark, kept in the token field.
-- Its progress (progress-2.lua), if it reported any, moves to the done key's `prog` field.
-- K.no_err (optional): the caller knows the error hash holds no error of this job (it found
-- the hash empty this call and wrote none since), so it is neither read nor deleted from.
local function finish(K, id, s, status, now, ttl, result)
  s.status = status
  s.completed = now
  s.token = K.mark or ''
  rcall('DEL', K.done)
  -- K.no_prog: the caller found the progress hash empty (one EXISTS a call, not two commands
  -- a job): no job reported progress, so this one has none to keep.
  local prog = not K.no_prog and rcall('HGET', K.prog, id)
  local err = not K.no_err -- its error hash value, false for none (true: not read, so deleted)
  if ttl > 0 then
    err = err and rcall('HGET', K.err, id)
    rcall('HSET', K.done, 'spec', s.spec, 'state', pack_state(s), 'err', err or '', 'res',
      result)
    if prog then
      rcall('HSET', K.done, 'prog', prog)
    end
    rcall('PEXPIRE', K.done, K.ttl_text or ttl)
    index_ended(K[status], id, now, K.keep or ttl)
  end
  if prog then
    rcall('HDEL', K.prog, id)
  end
  if grouped(s) then
    rcall('HDEL', K.groupof, id)
  end
  rcall('HDEL', K.jobs, id)
  if err then
    rcall('HDEL', K.err, id)
  end
  if status == 'completed' or status == 'failed' then
    if K.tally then -- gathered by the caller, written once a call (tally_flush)
      local by = K.tally[K.totals] or {}
      K.tally[K.totals] = by
      by[status] = (by[status] or 0) + 1
    else
      redis.pcall('HINCRBY', K.totals, status, 1) -- pcall: see tally_flush
    end
  end
end

-- Add the ends gathered in `tally` (totals hash -> status -> n, see finish) to their totals
-- hashes: one HINCRBY per hash and status a call, not one a job.
local function tally_flush(tally)
  for key, by in pairs(tally) do
    for status, n in pairs(by) do
      -- pcall: a counter holding a non-integer (or a key of another type) is damaged data; it
      -- must never fail the call that ends jobs.
      redis.pcall('HINCRBY', key, status, n)
    end
  end
end

-- Lease job `id` (state `s`) under `token` until `deadline` (ms, number or text) and append
-- its reply row {q, id, spec, state, error} to `out`. K = {jobs=, err=, leases=, no_err=}:
-- no_err (optional) that the error hash is empty (the caller asked once), so not read.
local function hand_out(K, out, q, id, s, token, deadline)
  s.token = token
  local state = save_state(K.jobs, id, s)
  rcall('ZADD', K.leases, deadline, id)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = q, id, s.spec, state
  out[n + 5] = not K.no_err and rcall('HGET', K.err, id) or ''
end

-- Forget the announcements (see announce-2.lua) whose expiry has passed by `now` (server ms).
local function forget_expired(workers_key, beats_key, now)
  for _, old in ipairs(rcall('ZRANGEBYSCORE', workers_key, '-inf', now)) do
    rcall('ZREM', workers_key, old)
    rcall('HDEL', beats_key, old)
  end
end
