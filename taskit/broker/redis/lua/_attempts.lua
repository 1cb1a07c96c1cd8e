-- A job's failed attempts (taskit.job.Job.failures), kept in its error hash value: pasted by
-- `-- @include _attempts.lua` after _msgpack.lua (settle-n.lua).
--
-- The error hash value of a job is one flat msgpack array: [error, error_type, traceback,
-- attempt, attempt, ...], oldest attempt first, each [number, started, ended, kind, error,
-- error_type]: number the job's attempts when it ran, started and ended server times in integer
-- ms (started nil when the state had none), kind 'retry', 'fail' or 'dead_letter'. With no
-- attempt it is the three items alone, as written before attempts were kept (and as the client
-- writes an error: taskit.broker.redis.records reads both). Since the history is inside that one
-- value, every path that moves or deletes a job's error moves or deletes its attempts with it.

local MAX_FAILURES = 20 -- taskit.job.MAX_FAILURES: the newest kept

-- The bytes of the three items of `triple` (msgpack [error, error_type, traceback]) and of its
-- first two; nil if it is not such an array.
local function error_items(triple)
  local n, _, at = mp_item(triple, 1)
  local c = string.byte(triple, 1)
  if n ~= 3 or not (c == 0x93 or c == 0xdc or c == 0xdd) then
    return nil
  end
  local two = mp_skip(triple, at, 2)
  local stop = two and mp_skip(triple, two, 1)
  if not stop then
    return nil
  end
  return string.sub(triple, at, stop - 1), string.sub(triple, at, two - 1)
end

-- The error triple's bytes of `old` (an error hash value, or false), its attempts' bytes (the
-- newest `keep` at most) and how many those are; nil if `old` is not such a value.
local function old_attempts(old, keep)
  if not old then
    return nil
  end
  local n, _, at = mp_item(old, 1)
  local c = string.byte(old, 1)
  if not n or n < 3 or not ((c >= 0x90 and c <= 0x9f) or c == 0xdc or c == 0xdd) then
    return nil
  end
  local first = mp_skip(old, at, 3)
  local drop = math.max(n - 3 - keep, 0)
  local from = first and mp_skip(old, first, drop)
  if not from then
    return nil
  end
  return string.sub(old, at, first - 1), string.sub(old, from), n - 3 - drop
end

-- Store the error of job `id`'s settled attempt (state `s` as the lease had it, `kind` its
-- applied outcome, `now` server ms) in error hash `err_key`: `triple` (the msgpack error sent
-- with the outcome, or '') replaces the job's error. A failure (retry, fail, dead_letter) also
-- appends the attempt to the job's attempts (its error and type copied from `triple`, nil
-- without one), dropping the oldest beyond MAX_FAILURES; then the old value is read and
-- rewritten, on this path only. Any other kind writes `triple` as it is, if given.
local function set_error(err_key, id, triple, s, kind, now)
  if kind ~= 'retry' and kind ~= 'fail' and kind ~= 'dead_letter' then
    if triple ~= '' then
      rcall('HSET', err_key, id, triple)
    end
    return
  end
  local head, text = nil, nil
  if triple ~= '' then
    head, text = error_items(triple)
  end
  local old_head, kept, count = old_attempts(rcall('HGET', err_key, id), MAX_FAILURES - 1)
  local started = s.started ~= '' and mp_uint_w(tonumber(s.started)) or '\192'
  local attempt = '\150' .. mp_uint_w(s.attempts) .. started .. mp_uint_w(now) .. mp_str(kind) ..
    (text or '\192\192')
  rcall('HSET', err_key, id, mp_array(4 + (count or 0)) .. (head or old_head or '\192\192\192') ..
    (kept or '') .. attempt)
end
