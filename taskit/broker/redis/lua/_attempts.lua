-- A job's failed attempts (taskit.job.Job.failures), kept in its error hash value: pasted by
-- `-- @include _attempts.lua` after _msgpack.lua (its reader) in settle-n.lua.
--
-- The error hash value of a job is one flat msgpack array: [error, error_type, traceback,
-- attempt, attempt, ...], oldest attempt first, each [number, started, ended, kind, error,
-- error_type]: number the job's attempts when it ran, started and ended server times in integer
-- ms (started nil when the state had none), kind 'retry', 'fail' or 'dead_letter'. With no
-- attempt it is the three items alone, as written before attempts were kept (and as the client
-- writes an error: taskit.broker.redis.records reads both). Since the history is inside that one
-- value, every path that moves or deletes a job's error moves or deletes its attempts with it.

local MAX_FAILURES = 20 -- taskit.job.MAX_FAILURES: the newest kept

-- The rest is built on first use (ATT()), as WF() in _workflow.lua: a script defines its
-- functions anew on every call, and only a settle of a failure uses these.
local att_built = nil
local function ATT()
  if not att_built then
    att_built = (function()
    -- The `n` low bytes of integer `v` >= 0, big-endian (exact up to 2^53: Lua has doubles).
    local function mp_bytes(v, n)
      local out = {}
      for j = n, 1, -1 do
        out[j] = v % 256
        v = math.floor(v / 256)
      end
      return string.char(unpack(out))
    end

    -- The msgpack of integer `v` >= 0 (up to 2^53), in its shortest form.
    local function mp_uint(v)
      if v < 128 then
        return string.char(v)
      elseif v < 256 then
        return '\204' .. string.char(v)
      elseif v < 65536 then
        return '\205' .. mp_bytes(v, 2)
      elseif v < 4294967296 then
        return '\206' .. mp_bytes(v, 4)
      end
      return '\207' .. mp_bytes(v, 8)
    end

    -- The msgpack header of an array of `n` items (n < 65536).
    local function mp_array(n)
      if n < 16 then
        return string.char(0x90 + n)
      end
      return '\220' .. mp_bytes(n, 2)
    end

    -- Whether msgpack byte `c` starts an array.
    local function is_array(c)
      return c ~= nil and ((c >= 0x90 and c <= 0x9f) or c == 0xdc or c == 0xdd)
    end

    -- The bytes of the three items of `triple` (msgpack [error, error_type, traceback]) and of
    -- its first two; nil if it is not such an array.
    local function error_items(triple)
      local n, _, at = mp_item(triple, 1)
      if n ~= 3 or not is_array(string.byte(triple, 1)) then
        return nil
      end
      local two = mp_skip(triple, at, 2)
      local stop = two and mp_skip(triple, two, 1)
      if not stop then
        return nil
      end
      return string.sub(triple, at, stop - 1), string.sub(triple, at, two - 1)
    end

    -- The error items' bytes of error hash value `old` (or false), its attempts' bytes (the
    -- newest `keep` at most) and how many those are; nil if `old` is not such a value.
    local function old_attempts(old, keep)
      if not old or not is_array(string.byte(old, 1)) then
        return nil
      end
      local n, _, at = mp_item(old, 1)
      local first = n and n >= 3 and mp_skip(old, at, 3)
      local drop = first and math.max(n - 3 - keep, 0)
      local from = first and mp_skip(old, first, drop)
      if not from then
        return nil
      end
      return string.sub(old, at, first - 1), string.sub(old, from), n - 3 - drop
    end

    -- See set_error: the value once attempt `s` (ended as `kind` at `now`) is appended.
    local function with_attempt(old, triple, s, kind, now)
      local head, text = nil, nil
      if triple ~= '' then
        head, text = error_items(triple)
      end
      local old_head, kept, count = old_attempts(old, MAX_FAILURES - 1)
      local started = s.started ~= '' and mp_uint(tonumber(s.started)) or '\192'
      return mp_array(4 + (count or 0)) .. (head or old_head or '\192\192\192') .. (kept or '') ..
        '\150' .. mp_uint(s.attempts) .. started .. mp_uint(now) ..
        string.char(0xa0 + #kind) .. kind .. (text or '\192\192')
    end

    return {with_attempt = with_attempt}
    end)()
  end
  return att_built
end

-- Store the error of job `id`'s settled attempt (state `s` as the lease had it, `kind` its
-- applied outcome, `now` server ms) in error hash `err_key`: `triple` (the msgpack error sent
-- with the outcome, or '') replaces the job's error. A failure (retry, fail, dead_letter) also
-- appends the attempt to the job's attempts (its error and type copied from `triple`, nil
-- without one), dropping the oldest beyond MAX_FAILURES: the old value is read and rewritten,
-- on this path only. Any other kind writes `triple` as it is, if given. True if it wrote.
local function set_error(err_key, id, triple, s, kind, now)
  if kind == 'retry' or kind == 'fail' or kind == 'dead_letter' then
    local old = rcall('HGET', err_key, id)
    rcall('HSET', err_key, id, ATT().with_attempt(old, triple, s, kind, now))
    return true
  elseif triple ~= '' then
    rcall('HSET', err_key, id, triple)
    return true
  end
  return false
end
