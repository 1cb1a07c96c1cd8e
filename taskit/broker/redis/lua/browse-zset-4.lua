--[[ browse-zset: a page of the jobs of one sorted set, by (score, member), from a cursor
(read only): delayed (SCHEDULED, RETRYING), leases (RUNNING), dead (DEAD), ranked (QUEUED, by
priority) and the finished-job indexes (COMPLETED, FAILED, CANCELLED).

KEYS[1] the sorted set walked: a delayed set, lease set, dead set, ranked set, completed set,
  failed set or cancelled set    KEYS[2] jobs hash    KEYS[3] error hash    KEYS[4] progress hash
ARGV[1] 'asc' or 'desc'    ARGV[2] the part walked: 'all', 'neg' (scores < 0) or 'pos' (> 0)
ARGV[3] the cursor's score ('' from the start)    ARGV[4] the cursor's member
ARGV[5] n, rows wanted    ARGV[6] budget, most members examined
ARGV[7] the status listed ('' any)    ARGV[8] 'live' (rows with records), 'ranked' (live, members
'<seq>:<id>') or 'ids' (the id alone)    ARGV[9] keep: when not '', members scored (ms) before
now - keep are not walked (a finished-job index lists a job at most the broker's result TTL)

Resumes after the cursor, exclusive, whether or not its member is still there: its place is
found by rank (ZRANK when the member still has that score, else a binary search among the
members of that score), O(log n), so a page costs O(log n + examined) whatever the set's size.
Returns what _browse.lua says; each row's position is its score and member.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _browse.lua

local key, order, part = KEYS[1], ARGV[1], ARGV[2]
local cs, cm = ARGV[3], ARGV[4]
local n, budget, want, mode = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local B = {jobs = KEYS[2], err = KEYS[3], prog = KEYS[4]}

-- Whether byte string a sorts after b (as Redis orders members: bytewise).
local function after(a, b)
  local len = math.min(#a, #b)
  for i = 1, len do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end

-- How many members sort before (cs, cm), and whether (cs, cm) itself is in the set.
local function before_cursor()
  local score = rcall('ZSCORE', key, cm)
  if score and tonumber(score) == tonumber(cs) then
    return rcall('ZRANK', key, cm), true
  end
  local lo = rcall('ZCOUNT', key, '-inf', '(' .. cs)
  local hi = rcall('ZCOUNT', key, '-inf', cs)
  while lo < hi do -- the first member of score cs after cm
    local mid = math.floor((lo + hi) / 2)
    if after(rcall('ZRANGE', key, mid, mid)[1], cm) then
      hi = mid
    else
      lo = mid + 1
    end
  end
  return lo, false
end

-- The ranks of the part walked, first and last.
local first, last = 0, rcall('ZCARD', key) - 1
if part == 'neg' then
  last = rcall('ZCOUNT', key, '-inf', '(0') - 1
elseif part == 'pos' then
  first = rcall('ZCOUNT', key, '-inf', 0)
end
if ARGV[9] ~= '' then
  first = rcall('ZCOUNT', key, '-inf', '(' .. (now_ms() - tonumber(ARGV[9])))
end

local at -- the next rank to examine
if order == 'asc' then
  at = first
  if cs ~= '' then
    local below, present = before_cursor()
    at = math.max(first, below + (present and 1 or 0))
  end
else
  at = last
  if cs ~= '' then
    at = math.min(last, before_cursor() - 1)
  end
end

local out, rows, examined = {0, cs, cm, 0}, 0, 0
while rows < n and examined < budget and at >= first and at <= last do
  local size = math.min(budget - examined, math.max(n - rows, 50))
  local got
  if order == 'asc' then
    got = rcall('ZRANGE', key, at, math.min(at + size - 1, last), 'WITHSCORES')
  else
    got = rcall('ZRANGE', key, math.max(at - size + 1, first), at, 'WITHSCORES')
  end
  local from, to, step = 1, #got - 1, 2
  if order == 'desc' then
    from, to, step = #got - 1, 1, -2
  end
  for j = from, to, step do
    local member, score = got[j], got[j + 1]
    examined = examined + 1
    at = at + (order == 'asc' and 1 or -1)
    out[2], out[3] = score, member
    if mode == 'ids' then
      id_row(out, score, member, member)
      rows = rows + 1
    else
      local id = member
      if mode == 'ranked' then
        id = string.match(member, '^[^:]*:(.*)$') or member
      end
      if live_row(B, out, score, member, id, want) then
        rows = rows + 1
      end
    end
    if rows >= n or examined >= budget then
      break
    end
  end
end
out[1] = examined
out[4] = (at >= first and at <= last) and 1 or 0
return out
