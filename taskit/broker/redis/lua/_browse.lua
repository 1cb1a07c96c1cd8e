-- Shared helpers of the browsing scripts (browse-*.lua: one page of a listing, read only),
-- pasted after _common.lua by `-- @include _browse.lua`.
--
-- Every browse script answers {examined, pos_a, pos_b, more, rows...}: how many entries it
-- examined, the position of the last one (where the next call resumes, exclusive), 1 when the
-- structure has entries past it (0: walked to its end), then 7 values per row: pos_a, pos_b
-- (the row's own position), id, spec, state, error, progress. A row whose record does not split
-- comes back whole as its spec with an empty state (the client shows a stand-in); in 'ids' mode
-- (finished jobs, whose done keys the script is not given) spec, state, error and progress are
-- ''. It stops at `n` rows or `budget` entries examined, whichever comes first.

-- Append the row of live job `id` at (`a`, `b`) to `out` if it has a record (of status `want`,
-- '' for any; an unreadable record is always a row); whether it did. B = {jobs=, err=, prog=}.
local function live_row(B, out, a, b, id, want, queue)
  local raw = rcall('HGET', B.jobs, id)
  if not raw then
    return false -- a stray entry (or the job moved on since): not listed
  end
  local s = parse_record(raw)
  local spec, state = raw, ''
  if s then
    if (want ~= '' and s.status ~= want) or (queue and queue ~= '' and s.queue ~= queue) then
      return false
    end
    spec, state = s.spec, pack_state(s)
  end
  local o = #out
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = a, b, id, spec, state
  out[o + 6] = rcall('HGET', B.err, id) or ''
  out[o + 7] = rcall('HGET', B.prog, id) or ''
  return true
end

-- The id row of `id` at (`a`, `b`), for 'ids' mode.
local function id_row(out, a, b, id)
  local o = #out
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = a, b, id, '', ''
  out[o + 6], out[o + 7] = '', ''
end
