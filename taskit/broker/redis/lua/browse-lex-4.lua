--[[ browse-lex: a page of the jobs of a sorted set whose members all score 0, by member, from a
cursor (read only): a queue's group set (ready grouped jobs), and the limit sets of held-back
jobs (freed: '<queue>\0<seq>\0<id>'; waiting: '<limit key>\0<seq>\0<id>', of every queue).

KEYS[1] the sorted set walked: a group set, the limit freed zset or the limit waiting zset
KEYS[2] jobs hash    KEYS[3] error hash    KEYS[4] progress hash
ARGV[1] lowest member walked (ZRANGEBYLEX form: '-', '[x')    ARGV[2] highest ('+', '(x')
ARGV[3] the last member listed ('' from the lowest)    ARGV[4] n, rows wanted
ARGV[5] budget, most members examined    ARGV[6] the queue listed ('' any: the set is the
queue's own)    ARGV[7] the status listed

A member's job id is its part after its last NUL. O(log n + examined). Returns what _browse.lua
says; each row's position is '' and its member.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _browse.lua

local key, low, high, last = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local n, budget, queue, want = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local B = {jobs = KEYS[2], err = KEYS[3], prog = KEYS[4]}
local from = low
if last ~= '' then
  from = '(' .. last
end
local out, rows, examined, ended = {0, '', last, 0}, 0, 0, false
while rows < n and examined < budget and not ended do
  local size = math.min(budget - examined, math.max(n - rows, 50))
  local got = rcall('ZRANGEBYLEX', key, from, high, 'LIMIT', 0, size)
  ended = #got < size
  for _, member in ipairs(got) do
    examined = examined + 1
    from = '(' .. member
    out[3] = member
    local id = string.match(member, '([^%z]*)$')
    if live_row(B, out, '', member, id, want, queue) then
      rows = rows + 1
    end
    if rows >= n or examined >= budget then
      ended = false
      break
    end
  end
end
out[1] = examined
out[4] = (not ended and #rcall('ZRANGEBYLEX', key, from, high, 'LIMIT', 0, 1) > 0) and 1 or 0
return out
