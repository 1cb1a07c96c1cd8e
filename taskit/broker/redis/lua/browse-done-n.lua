--[[ browse-done: the records of finished jobs listed by browse-zset in 'ids' mode; entries of
the index whose done key has gone (expired, forgotten) or holds another end are removed.

KEYS[1] the finished-job index: a completed set, failed set or cancelled set
then per job i: KEYS[1 + i] the job's done key
ARGV[1] the status of that index    then per job i: ARGV[1 + i] its id

Returns per job: spec, state, error, result, progress (state '' when it is not listed).
]]
local rcall = redis.call

local out, stale = {}, {}
for i = 2, #ARGV do
  local d = rcall('HMGET', KEYS[i], 'spec', 'state', 'err', 'res', 'prog')
  local o = #out
  if d[2] and string.sub(d[2], 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = d[1] or '', d[2], d[3] or '',
      d[4] or '', d[5] or ''
  else
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = '', '', '', '', ''
    stale[#stale + 1] = ARGV[i]
  end
end
if #stale > 0 then
  rcall('ZREM', KEYS[1], unpack(stale))
end
return out
