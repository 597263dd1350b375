-- heartbeat: extends current leases.
-- ARGV: now, extend_ms, then leases ('<member>:<token>'). Returns 1 (extended) or 0 (lost) each.
local le = string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2]))
local ls = {}
for i = 3, #ARGV do ls[#ls + 1] = ARGV[i] end
local current = zmscore_all(K_LEASE, ls)
local out, pairs_ = {}, {}
for n, l in ipairs(ls) do
  if current[n] then
    pairs_[#pairs_ + 1] = le
    pairs_[#pairs_ + 1] = l
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
zadd_leases(pairs_)
return out
