--[[ browse-list: a page of a queue's FIFO list (its ready jobs of the default priority), from a
cursor (read only).

KEYS[1] FIFO list    KEYS[2] jobs hash    KEYS[3] error hash    KEYS[4] progress hash
ARGV[1] the last id listed ('' from the head)    ARGV[2] n, rows wanted
ARGV[3] budget, most ids examined

Resumes after the last id listed, found with LPOS (a scan in C, and the one cost that grows with
the list); when it is gone (reserved: reserves pop the head, so every job before it went too)
the walk goes on from the head. Reads only the ids it examines (LRANGE of a window, never the
whole list). Returns what _browse.lua says; each row's position is '' and its id.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _browse.lua

local key, last, n, budget = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local B = {jobs = KEYS[2], err = KEYS[3], prog = KEYS[4]}
local at = 0
if last ~= '' then
  local p = rcall('LPOS', key, last)
  at = p and p + 1 or 0
end
local out, rows, examined, ended = {0, '', last, 0}, 0, 0, false
while rows < n and examined < budget and not ended do
  local size = math.min(budget - examined, math.max(n - rows, 50))
  local got = rcall('LRANGE', key, at, at + size - 1)
  ended = #got < size
  for _, id in ipairs(got) do
    examined = examined + 1
    at = at + 1
    out[3] = id
    if live_row(B, out, '', id, id, 'pending') then
      rows = rows + 1
    end
    if rows >= n or examined >= budget then
      ended = false
      break
    end
  end
end
out[1] = examined
out[4] = (not ended and rcall('LINDEX', key, at)) and 1 or 0
return out
