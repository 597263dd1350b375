-- heartbeat: extends current leases.
-- ARGV: now, extend_ms, then leases ('<member>:<token>'). Returns 1 (extended) or 0 (lost) each.
-- The deadline + 0.5: a heartbeat marks the attempt started (see recover in lib.lua).
local le = string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2])) .. '.5'
local ls = {}
for i = 3, #ARGV do ls[#ls + 1] = ARGV[i] end
-- Extending only leases that exist (XX) counts the ones it moved (CH): when that is all of
-- them, none needs a lookup of its own (ZMSCORE formats each score with sprintf).
local pairs_ = {}
for n, l in ipairs(ls) do
  pairs_[2 * n - 1] = le
  pairs_[2 * n] = l
end
allow_writes()
local moved = call_chunked('ZADD', K_LEASE, pairs_, 2, { 'XX', 'CH' })
local out = {}
if moved == #ls then
  for n = 1, #ls do out[n] = 1 end
  return out
end
-- Some lease was lost, given twice or already at this deadline: look each up.
local current = zmscore_all(K_LEASE, ls)
for n = 1, #ls do
  if current[n] then out[n] = 1 else out[n] = 0 end
end
return out
