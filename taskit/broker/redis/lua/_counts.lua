-- Per-minute counts (browsing), pasted by `-- @include _counts.lua` into the scripts that count:
-- enqueue (jobs stored) and settle (outcomes, run times). Expects _common.lua above it.
--
--   {p}:counts:<minute>  hash  minute: epoch seconds, a multiple of 60, on the server's clock;
--                              fields '<queue>\0<c>', c one of e (enqueued), c (completed),
--                              f (failed), r (retried), d (dead-lettered), x (cancelled), and
--                              't<i>' (runs in bucket i of RUN_TIME_BOUNDS, taskit.broker.browse);
--                              expires COUNTS_KEPT + 120 s after its minute ends (so at least
--                              that long after its last write)
--
-- The one key a script names that is not in KEYS besides the workflow keys (see keys.py): its
-- minute is the server's, known only inside the script. It is built from the broker's hash tag
-- (the jobs hash's name minus ':jobs'), so it lies in the same Cluster slot as every key passed.
-- Counts are gathered during a call and written once at its end (counts_flush): one HINCRBY per
-- distinct field, whatever the batch size, and one PEXPIRE when a field was new (the expiry is
-- the same for every write of a minute, so the call that made a field sets it for all).

local COUNTS_TTL = 86400 + 120
-- RUN_TIME_BOUNDS of taskit.broker.browse in ms (tests/broker/test_lua_browse.py checks them).
local RUN_BOUNDS_MS = {1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
  60000, 300000, 1800000}
local counted = {} -- field -> n, this call's counts
local counted_any = false
local ran = {} -- queue -> bucket i -> runs, this call's (fields made at the flush, see count_run)

-- Count `n` more of `code` (one of e c f r d x, or 't<i>') for `queue`.
local function count(queue, code, n)
  local field = queue .. '\0' .. code
  counted[field] = (counted[field] or 0) + n
  counted_any = true
end

-- Count one run of `ms` milliseconds for `queue` in its histogram bucket: the first bound it
-- does not exceed (a run of exactly a bound falls in that bound's bucket), else the last.
-- (No string built and no library call a job: Redis pays tens of instructions a Lua operation.)
local function count_run(queue, ms)
  local n = #RUN_BOUNDS_MS
  local i = n
  for b = 1, n do
    if ms <= RUN_BOUNDS_MS[b] then
      i = b - 1
      break
    end
  end
  local by = ran[queue]
  if not by then
    by = {}
    ran[queue] = by
  end
  by[i] = (by[i] or 0) + 1
  counted_any = true
end

-- Add the runs count_run gathered to the counts (before counts_flush; a script that counts no
-- run neither calls this nor defines its table).
local function runs_counted()
  for queue, by in pairs(ran) do
    for i, n in pairs(by) do
      counted[queue .. '\0t' .. i] = n -- (no other count names a bucket)
    end
  end
end

-- Write this call's counts to the hash of the minute of `now` (ms), under hash tag `tag`.
local function counts_flush(tag, now)
  if not counted_any then
    return
  end
  local minute = math.floor(now / 60000) * 60
  local key = tag .. ':counts:' .. minute
  local fresh = false -- a field made now (its count is this call's)
  for field, n in pairs(counted) do
    -- pcall: a hash of another type (damaged data) must not fail the call that moved the jobs
    local total = redis.pcall('HINCRBY', key, field, n)
    if type(total) == 'table' then
      return
    end
    fresh = fresh or total == n
  end
  if fresh then -- (PEXPIRE to that time: EXPIREAT is not in the documented ACL)
    rcall('PEXPIRE', key, (minute + 60 + COUNTS_TTL) * 1000 - now)
  end
end
