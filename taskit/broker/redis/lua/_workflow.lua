-- Workflows (taskit.dependencies) inside the scripts: pasted after _common.lua and _limits.lua
-- (its msgpack reader) by `-- @include _workflow.lua`. The one place that names keys a script
-- was not given in KEYS (see keys.py): a job's end reaches jobs of any queue and any workflow,
-- which its caller cannot know before the script runs (and bury's hook, in scripts given no
-- workflow key at all, names the fixed ones too). Each such key is built here from the
-- broker's hash tag (the jobs hash's name minus ':jobs'), so it lies in the same Cluster slot
-- as every key the script was given.
--
--   {p}:wf:<id>       hash  one workflow: 'created' (ms), 'count' (nodes so far), 'left' (nodes
--                           not ended), 'ttl' (the broker's result TTL at its last enqueue, ms),
--                           and per node j:
--                             'n:<j>' '<order>|<f, c or ->|<own ttl ms or ''>|' ..
--                                     ids_pack({task, queue, parent, ...}): its if_failed
--                                     (fail, continue; '-' when it waits for nothing)
--                             'c:<j>' ids_pack of the nodes waiting for j
--                             'w:<j>' how many of j's parents have not ended (while deferred)
--                             'e:<j>' '<status>|<#err>|<err><res>' once j ended: its error hash
--                                     value and its msgpack JobResult ('' each when none)
--   {p}:wfnodes       hash  live node's job id -> its workflow id (deleted when the node ends:
--                           a job's end is applied to its workflow once)
--   {p}:deferred      hash  queue -> how many of its jobs are DEFERRED
--
-- A DEFERRED job is a live record (status 'deferred', its due time in sched) in no queue
-- structure. W = {tag=, jobs=, err=, seq=, prog=, of=, deferred=, ttl=, now=}: ttl the broker's
-- result TTL in ms (a workflow's record expires that long after its last node ended); a script
-- that is not given it (one that buries an unreadable record) leaves it nil, and the TTL the
-- workflow's last enqueue stored in its hash ('ttl') is used.

local function wf_tag(jobs_key)
  return string.sub(jobs_key, 1, -6) -- '<tag>:jobs'
end

local function wf_key(tag, wid)
  return tag .. ':wf:' .. wid
end

local function wf_q(tag, queue, kind)
  return tag .. ':q:' .. queue .. ':' .. kind
end

-- Count `n` more (or fewer) DEFERRED jobs of `queue`; a count back at 0 is deleted.
local function count_deferred(W, queue, n)
  -- pcall: a count that is not a number (damaged data) must not fail the call that ends jobs
  local left = redis.pcall('HINCRBY', W.deferred, queue, n)
  if type(left) == 'number' and left <= 0 then
    rcall('HDEL', W.deferred, queue)
  end
end

-- Whether any job is a node of a workflow now: the one read a call that ends jobs pays (a
-- node hash of another type, damaged data, reads as none, so it never fails that call).
local function wf_any(W)
  return rcall('TYPE', W.of).ok == 'hash'
end

-- Whether a live node `id` is in a workflow (the caller then reads its error before it ends);
-- only after wf_any.
local function wf_member(W, id)
  return rcall('HEXISTS', W.of, id) == 1
end

-- The rest is built on first use (WF()): a script defines its functions anew on every call,
-- which costs Redis CPU on every call of every script that includes them (measured: about a
-- fifth of a plain enqueue's script time), while only calls that touch a workflow use them.
local wf_built = nil
local function WF()
  if not wf_built then
    wf_built = (function()
    -- A list of texts as one string: '<bytes>:<text>' each (texts may hold any byte).
    local function ids_pack(list)
      local parts = {}
      for i, v in ipairs(list) do
        parts[i] = #v .. ':' .. v
      end
      return table.concat(parts)
    end

    local function ids_unpack(s)
      local out, i = {}, 1
      while i <= #s do
        local n, at = string.match(s, '^(%d+):()', i)
        if not n then
          break
        end
        out[#out + 1] = string.sub(s, at, at + n - 1)
        i = at + n
      end
      return out
    end

    -- The msgpack text at byte `i` of `b` and where it ends (+1); nil, nil when it is no text.
    local function mp_text(b, i)
      local c = string.byte(b, i)
      if c and c >= 0xa0 and c <= 0xbf then
        return string.sub(b, i + 1, i + c - 0xa0), i + 1 + c - 0xa0
      end
      local w = ({[0xd9] = 1, [0xda] = 2, [0xdb] = 4})[c]
      if not w then
        return nil, nil
      end
      local n = mp_uint(b, i + 1, w)
      return string.sub(b, i + 1 + w, i + w + n), i + 1 + w + n
    end

    -- The error text and error type of an ended job's result, as taskit.job.result_of gives them:
    -- a cancelled job's made-up one, else its JobResult's fields, else its error hash value's
    -- (nil for none).
    local function result_error(status, err, res)
      if status == 'cancelled' and res == '' then
        return 'job was cancelled', 'Cancelled'
      end
      local found = {}
      if res ~= '' then
        local c = string.byte(res, 1)
        if not (c and ((c >= 0x80 and c <= 0x8f) or c == 0xde or c == 0xdf)) then
          return nil, nil
        end
        local n, i = mp_item(res, 1)
        for _ = 1, n / 2 do
          local key, at = mp_text(res, i)
          if key == nil then
            break
          end
          found[key] = mp_text(res, at)
          i = mp_skip(res, at, 1)
          if not i then
            break
          end
        end
        return found.error, found.error_type
      end
      if err ~= '' then
        local n, i = mp_item(err, 1)
        if n and n >= 2 then
          local text, at = mp_text(err, i)
          at = at or mp_skip(err, i, 1)
          return text, at and mp_text(err, at)
        end
      end
      return nil, nil
    end

    -- The task name in an encoded spec (its third item, after the tag and the empty id), or ''.
    local function spec_task(spec)
      local n, i = mp_item(spec, 1)
      if not n or n < 3 then
        return ''
      end
      i = mp_skip(spec, i, 2)
      return i and mp_text(spec, i) or ''
    end

    -- What `e:<id>` holds for an end.
    local function end_record(status, err, res)
      return status .. '|' .. #err .. '|' .. err .. res
    end

    -- A node's if_failed ('f' or 'c') and own TTL ('' or ms) from its 'n:' field, or nil.
    local function node_mode(wk, id)
      return string.match(rcall('HGET', wk, 'n:' .. id) or '', '^%d+|([fc-])|(%d*)|')
    end

    -- Release deferred job `c` (its last parent ended): PENDING at the back of its queue, or
    -- SCHEDULED until its due time; reserves of its queue are woken.
    local function wf_release(W, wk, c)
      local s = load_state(W.jobs, c)
      if not s or s.status ~= 'deferred' then
        return
      end
      rcall('HDEL', wk, 'w:' .. c)
      count_deferred(W, s.queue, -1)
      local due = s.sched ~= '' and math.floor(tonumber(s.sched) * 1000 + 0.5) or nil
      local tag, q = W.tag, s.queue
      if due and due > W.now then
        s.status = 'scheduled'
        save_state(W.jobs, c, s)
        rcall('ZADD', wf_q(tag, q, 'delayed'), due, c)
        wake_if_earliest(wf_q(tag, q, 'delayed'), wf_q(tag, q, 'wake'), c)
        return
      end
      s.status = 'pending'
      make_ready({fifo = wf_q(tag, q, 'fifo'), ranked = wf_q(tag, q, 'ranked'), seq = W.seq,
        groups = wf_q(tag, q, 'groups'), turns = wf_q(tag, q, 'turns'),
        groupof = wf_q(tag, q, 'groupof')}, c, s, false)
      save_state(W.jobs, c, s)
      wake(wf_q(tag, q, 'wake'), 1)
    end

    -- End deferred job `c` (state `s`) because its parent `parent` ended `pst` (failed,
    -- dead_letter or cancelled; `why` = {error, error type} of its result) and `c` does not
    -- continue on failure: FAILED or CANCELLED without running, its error naming the parent (or,
    -- when the parent was itself ended by a failed dependency, that parent's error as it is: it
    -- names the failure that started the cascade, and does not grow down a chain); its record
    -- kept its own TTL (`own` ms) or the broker's. Returns its end: {c, status, err, res}.
    local function wf_kill(W, wk, c, s, parent, pst, why, own, ttl)
      local status = pst == 'cancelled' and 'cancelled' or 'failed'
      local msg = 'waited for job ' .. parent .. ', which ended ' .. pst
      if why[1] and why[2] == 'DependencyFailed' then
        msg = why[1]
      elseif why[1] then
        msg = msg .. ': ' .. why[1]
      end
      local err = mp_error(msg, status == 'failed' and 'DependencyFailed' or 'DependencyCancelled')
      rcall('HSET', W.err, c, err)
      rcall('HDEL', wk, 'w:' .. c)
      count_deferred(W, s.queue, -1)
      if status == 'failed' then
        s.failed = W.now
      end
      finish({jobs = W.jobs, err = W.err, prog = W.prog, no_prog = true,
        done = W.tag .. ':done:' .. c, totals = wf_q(W.tag, s.queue, 'totals'),
        groupof = wf_q(W.tag, s.queue, 'groupof'), completed = wf_q(W.tag, s.queue, 'completed'),
        failed = wf_q(W.tag, s.queue, 'failed'), cancelled = wf_q(W.tag, s.queue, 'cancelled'),
        keep = W.ttl or ttl}, c, s, status, W.now,
        own ~= '' and tonumber(own) or ttl, '')
      return {c, status, err, ''}
    end

    -- Apply the end of job `id` (its final `status`, error hash value `err` and msgpack result
    -- `res`, '' for none) to its workflow, once: record it, count it, and hand it to each node
    -- waiting for it (one parent fewer, released with none left; or ended, and so on down: a
    -- cascade, breadth first). Nothing for a job that is no live node.
    local function wf_end(W, id, status, err, res)
      local todo, k = {{id, status, err, res}}, 1
      while k <= #todo do
        local jid, st, e, r = todo[k][1], todo[k][2], todo[k][3], todo[k][4]
        k = k + 1
        local wid = rcall('HGET', W.of, jid)
        if wid then
          rcall('HDEL', W.of, jid)
          local wk = wf_key(W.tag, wid)
          -- pcall: a workflow key holding another type (damaged data) must not fail the call that
          -- ended the job, after its writes; that workflow is left as it is, and the log says so
          local first = redis.pcall('HSETNX', wk, 'e:' .. jid, end_record(st, e, r))
          if type(first) == 'table' then
            redis.log(redis.LOG_WARNING, 'taskit: workflow ' .. quote(wid) ..
              ' not updated for job ' .. quote(jid) .. ': ' .. tostring(first.err))
          elseif first == 1 then
            local ttl = W.ttl or tonumber(rcall('HGET', wk, 'ttl') or '') or 0
            if rcall('HINCRBY', wk, 'left', -1) <= 0 then
              rcall('PEXPIRE', wk, math.max(ttl, 1))
            end
            local kids = rcall('HGET', wk, 'c:' .. jid)
            local text, texted = nil, false
            for _, c in ipairs(kids and ids_unpack(kids) or {}) do
              local mode, own = node_mode(wk, c)
              if st == 'completed' or mode == 'c' then
                -- 'w:' exists while it waits (gone once it ended: nothing to count down)
                if rcall('HEXISTS', wk, 'w:' .. c) == 1
                    and rcall('HINCRBY', wk, 'w:' .. c, -1) <= 0 then
                  wf_release(W, wk, c)
                end
              elseif mode then
                local s = load_state(W.jobs, c)
                if s and s.status == 'deferred' then
                  if not texted then
                    text, texted = {result_error(st, e, r)}, true
                  end
                  todo[#todo + 1] = wf_kill(W, wk, c, s, jid, st, text, own, ttl)
                end
              end
            end
          end
        end
      end
    end

    -- Why job `p` cannot be a parent of a node of workflow `wk` (its hash), or nil when it can: a
    -- node of it, or a job of no workflow (live, or finished with its record kept), which joins it.
    local function wf_refused(W, wk, p)
      if rcall('HEXISTS', wk, 'n:' .. p) == 1 then
        return nil
      elseif rcall('HEXISTS', W.of, p) == 1 then
        return 'belongs to another workflow'
      end
      local s, why = load_state(W.jobs, p)
      if why then
        return 'has an unreadable record (' .. why .. ')'
      elseif s == nil and rcall('HEXISTS', W.tag .. ':done:' .. p, 'state') == 0 then
        return 'is unknown (never stored, or its record expired)'
      end
      return nil
    end

    -- Make job `p` (of no workflow, see wf_refused) a node of workflow `wid` (hash `wk`), after its
    -- last node: a live job until its end, which will count then; a finished job (or a dead letter)
    -- as ended, its result copied from its record. `stored`: the states of the jobs the calling
    -- enqueue stores, whose records it writes last.
    local function wf_adopt(W, wk, wid, p, stored)
      local s = stored[p] or load_state(W.jobs, p)
      local queue, task
      if s and s.status ~= 'dead_letter' then
        rcall('HSET', W.of, p, wid)
        rcall('HINCRBY', wk, 'left', 1)
        queue, task = s.queue, spec_task(s.spec)
      elseif s then
        rcall('HSET', wk, 'e:' .. p, end_record('dead_letter', rcall('HGET', W.err, p) or '', ''))
        queue, task = s.queue, spec_task(s.spec)
      else
        local done = rcall('HMGET', W.tag .. ':done:' .. p, 'spec', 'state', 'err', 'res')
        local d = done[2] and parse_record(#done[2] .. ':' .. done[2])
        if not d then
          return false
        end
        rcall('HSET', wk, 'e:' .. p, end_record(d.status, done[3] or '', done[4] or ''))
        queue, task = d.queue, spec_task(done[1] or '')
      end
      local order = rcall('HINCRBY', wk, 'count', 1)
      rcall('HSET', wk, 'n:' .. p, order .. '|f||' .. ids_pack({task, queue}))
      return true
    end

    -- Join node `id` (sent as `node` = {wid=, mode=, own=, pack=, parents=}, stored now) to its
    -- workflow, made if new (kept again if it was expiring), after any parent of no workflow it
    -- adopts (`stored`: see wf_adopt). Returns, with the workflow's hash: the number of its
    -- parents not ended (it waits for them: `kids`, the caller's, gets it per parent, written
    -- after the batch); or the first parent that ended failed, dead or cancelled when it does not
    -- continue on failure, as {parent, its end record}: the caller stores it ended.
    local function wf_join(W, node, id, kids, stored)
      local wk = wf_key(W.tag, node.wid)
      if rcall('EXISTS', wk) == 0 then
        rcall('HSET', wk, 'created', W.now, 'count', 0, 'left', 0, 'ttl', W.ttl)
      else -- HSET first: an enqueue's first write must grow memory (see enqueue-n.lua on OOM)
        rcall('HSET', wk, 'ttl', W.ttl)
        rcall('PERSIST', wk)
      end
      local waiting, failed = {}, nil
      for _, p in ipairs(node.parents) do
        if rcall('HEXISTS', wk, 'n:' .. p) == 0 then
          wf_adopt(W, wk, node.wid, p, stored)
        end
        local rec = rcall('HGET', wk, 'e:' .. p)
        if not rec then
          waiting[#waiting + 1] = p
        elseif not failed and node.mode ~= 'c' and string.sub(rec, 1, 10) ~= 'completed|' then
          failed = {p, rec}
        end
      end
      -- A finished node enqueued again (its id replaced) keeps its place and starts afresh.
      local order = string.match(rcall('HGET', wk, 'n:' .. id) or '', '^(%d+)|')
      if order then
        rcall('HDEL', wk, 'e:' .. id, 'c:' .. id, 'w:' .. id)
      else
        order = rcall('HINCRBY', wk, 'count', 1)
      end
      rcall('HSET', wk, 'n:' .. id,
        order .. '|' .. node.mode .. '|' .. node.own .. '|' .. node.pack)
      rcall('HSET', W.of, id, node.wid)
      rcall('HINCRBY', wk, 'left', 1)
      if failed then
        return failed, wk
      end
      local lists = kids[wk] or {}
      kids[wk] = lists
      for _, p in ipairs(waiting) do
        lists[p] = (lists[p] or '') .. #id .. ':' .. id
      end
      if #waiting > 0 then
        rcall('HSET', wk, 'w:' .. id, #waiting)
      end
      return #waiting, wk
    end

    -- Cancel live node `id` of workflow `wk` as `cancel` does: a running one has its cancel
    -- requested; one deferred, pending, scheduled or retrying leaves its queue (or its limit's
    -- line) and ends cancelled. Returns 'asked', 'ended' (the caller applies its end with wf_end,
    -- its error hash value second), or nil (finished, or no record).
    local function wf_cancel_node(W, L, wk, id)
      local s = load_state(W.jobs, id)
      if not s then
        return nil
      elseif s.status == 'running' then
        if s.cancel ~= '1' then
          s.cancel = '1'
          save_state(W.jobs, id, s)
        end
        return 'asked'
      end
      local tag, q = W.tag, s.queue
      if s.status == 'deferred' then
        count_deferred(W, q, -1)
      elseif s.status == 'pending' or s.status == 'scheduled' or s.status == 'retrying' then
        if not L.forget(L, id, s) and s.status == 'pending' then
          unready({fifo = wf_q(tag, q, 'fifo'), ranked = wf_q(tag, q, 'ranked'),
            groups = wf_q(tag, q, 'groups'), turns = wf_q(tag, q, 'turns'),
            groupof = wf_q(tag, q, 'groupof')}, id, s)
        end
        rcall('ZREM', wf_q(tag, q, 'delayed'), id)
      else
        return nil
      end
      local _, own = node_mode(wk, id)
      local err = rcall('HGET', W.err, id) or ''
      finish({jobs = W.jobs, err = W.err, prog = W.prog, done = tag .. ':done:' .. id,
        totals = wf_q(tag, q, 'totals'), groupof = wf_q(tag, q, 'groupof'),
        completed = wf_q(tag, q, 'completed'), failed = wf_q(tag, q, 'failed'),
        cancelled = wf_q(tag, q, 'cancelled'), keep = W.ttl}, id, s, 'cancelled',
        W.now, (own or '') ~= '' and tonumber(own) or W.ttl, '')
      return 'ended', err
    end
      return {ids_pack = ids_pack, ids_unpack = ids_unpack, result_error = result_error,
        wf_refused = wf_refused, wf_join = wf_join, wf_kill = wf_kill, wf_end = wf_end,
        wf_cancel_node = wf_cancel_node}
    end)()
  end
  return wf_built
end

-- Bury's hook (see _common.lua): a node dead-lettered because its record is unreadable ends for
-- its workflow. Its script was given none of the workflow keys: they are named from the tag
-- here, as the rest (one TYPE, on this rare path only).
wf_buried = function(jobs_key, id, err, now)
  local tag = wf_tag(jobs_key)
  local W = {tag = tag, jobs = jobs_key, err = tag .. ':err', seq = tag .. ':seq',
    prog = tag .. ':progress', of = tag .. ':wfnodes', deferred = tag .. ':deferred', now = now}
  if wf_any(W) then
    WF().wf_end(W, id, 'dead_letter', err, '')
  end
end
